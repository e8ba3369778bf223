-- Orders across sections: the read models' facts of a reservation keep each section's part of
-- an order of several sections (JSON: section, quantity, total), to split its sales by section.
-- NULL for a reservation of one section, whose part is the whole.
ALTER TABLE rm_reservations ADD COLUMN lines text;

-- SalesAnalytics: how the refund of seats of an order of several sections splits by section
-- (JSON pairs of section and amount), recorded at `SeatsRefunded` and read when the money goes
-- back (`PaymentRefunded`), so each section loses the revenue of its own refunded seats.
CREATE TABLE rm_refund_splits (
    refund_id uuid PRIMARY KEY,
    lines text NOT NULL
);
