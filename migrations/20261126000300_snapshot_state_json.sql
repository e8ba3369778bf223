-- Snapshot states are written and read back as JSON text: `json` keeps the text as given (no
-- conversion to and from jsonb's binary form, which only pays off for queries into the value,
-- and snapshots are never queried into).
ALTER TABLE snapshots ALTER COLUMN state TYPE json USING state::json;
