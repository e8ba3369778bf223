-- Read models kept by boxoffice::projections (postgres feature). Each model's position is its row
-- in `checkpoints`, updated in the same transaction as its rows, so every event counts once.

-- AvailableSeats: one row per section, one row per seat that is not free.
CREATE TABLE rm_sections (
    event_id uuid NOT NULL,
    section text NOT NULL,
    capacity integer NOT NULL CHECK (capacity >= 0),
    PRIMARY KEY (event_id, section)
);

CREATE TABLE rm_seats (
    event_id uuid NOT NULL,
    section text NOT NULL,
    seat_id uuid NOT NULL,
    -- 1 = reserved (held for an unpaid reservation), 2 = sold. Free seats have no row.
    state smallint NOT NULL CHECK (state IN (1, 2)),
    PRIMARY KEY (event_id, section, seat_id)
);

-- Facts of started reservations, per read model (each model has its own position).
CREATE TABLE rm_reservations (
    model text NOT NULL,
    reservation_id uuid NOT NULL,
    event_id uuid NOT NULL,
    section text NOT NULL,
    customer_id uuid NOT NULL,
    quantity integer NOT NULL,
    total_minor bigint NOT NULL,
    currency text NOT NULL,
    PRIMARY KEY (model, reservation_id)
);

-- SalesAnalytics.
CREATE TABLE rm_event_sales (
    event_id uuid PRIMARY KEY,
    currency text NOT NULL,
    revenue bigint NOT NULL DEFAULT 0,
    tickets bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    cancelled bigint NOT NULL DEFAULT 0,
    expired bigint NOT NULL DEFAULT 0,
    compensated bigint NOT NULL DEFAULT 0
);

CREATE TABLE rm_section_sales (
    event_id uuid NOT NULL,
    section text NOT NULL,
    revenue bigint NOT NULL DEFAULT 0,
    tickets bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, section)
);

-- CustomerHistory.
CREATE TABLE rm_purchases (
    customer_id uuid NOT NULL,
    reservation_id uuid NOT NULL,
    -- Global position of the completion, for log order.
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    section text NOT NULL,
    tickets integer NOT NULL,
    total_minor bigint NOT NULL,
    currency text NOT NULL,
    PRIMARY KEY (customer_id, reservation_id)
);
CREATE INDEX rm_purchases_event ON rm_purchases (event_id, customer_id);

CREATE TABLE rm_customer_spent (
    customer_id uuid NOT NULL,
    currency text NOT NULL,
    amount bigint NOT NULL,
    PRIMARY KEY (customer_id, currency)
);
CREATE INDEX rm_customer_spent_rank ON rm_customer_spent (currency, amount DESC, customer_id);
