-- Read models of tickets and days (boxoffice::projections, postgres feature): CustomerTickets,
-- GateCheckins and DailySales. As for the others, each model's position is its row in
-- `checkpoints`, updated in the same transaction as its rows. CustomerTickets and DailySales keep
-- the facts of started reservations in `rm_reservations` under their own model name.

-- CustomerTickets: completed orders per customer, and every issued ticket with its holder now.
CREATE TABLE rm_orders (
    reservation_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    -- Global position of the completion, for log order.
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    section text NOT NULL,
    seats_bought integer NOT NULL CHECK (seats_bought >= 0),
    seats_kept integer NOT NULL CHECK (seats_kept >= 0),
    total_minor bigint NOT NULL,
    currency text NOT NULL
);
CREATE INDEX rm_orders_customer ON rm_orders (customer_id, position);

CREATE TABLE rm_held_tickets (
    ticket_id uuid PRIMARY KEY,
    reservation_id uuid NOT NULL,
    event_id uuid NOT NULL,
    section text NOT NULL,
    seat_id uuid NOT NULL,
    holder uuid NOT NULL,
    serial integer NOT NULL CHECK (serial >= 0),
    -- NULL while the ticket is valid; otherwise why and when it was revoked.
    revoked_reason text,
    revoked_at timestamptz,
    -- Where it was issued (global position, index in the purchase): the listing order.
    issued_position bigint NOT NULL,
    issued_index integer NOT NULL,
    CHECK ((revoked_reason IS NULL) = (revoked_at IS NULL))
);
CREATE INDEX rm_held_tickets_holder ON rm_held_tickets (holder, issued_position, issued_index);

-- GateCheckins: the event of each purchase whose tickets were issued (a scan names only the
-- purchase), and the scans per event and gate.
CREATE TABLE rm_gate_reservations (
    reservation_id uuid PRIMARY KEY,
    event_id uuid NOT NULL
);

CREATE TABLE rm_gate_checkins (
    event_id uuid NOT NULL,
    gate text NOT NULL,
    admitted bigint NOT NULL DEFAULT 0,
    exited bigint NOT NULL DEFAULT 0,
    turned_away bigint NOT NULL DEFAULT 0,
    offline bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, gate)
);

-- DailySales: per event and UTC day (of each log event's own timestamp). Revenue is a sum of
-- amounts, numeric like the other sums.
CREATE TABLE rm_daily_sales (
    event_id uuid NOT NULL,
    day date NOT NULL,
    currency text NOT NULL,
    revenue numeric NOT NULL DEFAULT 0,
    tickets_sold bigint NOT NULL DEFAULT 0,
    tickets_refunded bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, day)
);
