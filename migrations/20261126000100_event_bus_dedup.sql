-- Consumer-side deduplication for the event bus: per consumer and stream, the highest stream
-- version already handled. Redelivered or republished events at or below it are dropped.
CREATE TABLE IF NOT EXISTS event_bus_dedup (
    consumer       TEXT        NOT NULL,
    stream_id      TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL CHECK (stream_version >= 0),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream_id)
);
