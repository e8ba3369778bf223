-- The event store: one global log of events grouped into streams.
CREATE TABLE events (
    -- Global order. Never written from the column default: boxoffice_reserve_positions hands out
    -- positions so that position order matches transaction-id order (see the function below).
    global_position bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    stream_id text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 1),
    event_type text NOT NULL,
    schema_version integer NOT NULL,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Readers only return rows whose writer is older than every transaction still running
    -- (transaction_id < pg_snapshot_xmin(pg_current_snapshot())), invariant I7.
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

CREATE TABLE snapshots (
    stream_id text PRIMARY KEY,
    stream_version bigint NOT NULL,
    schema_version integer NOT NULL,
    state jsonb NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE idempotency_keys (
    key text PRIMARY KEY,
    stream_id text NOT NULL,
    event_ids uuid[] NOT NULL,
    stream_version bigint NOT NULL,
    first_global_position bigint NOT NULL,
    last_global_position bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Reserves `count` consecutive global positions and returns the first one.
--
-- It must be the transaction's first write: it assigns the transaction id and takes the positions
-- under one short session-level lock, so across transactions position order equals transaction-id
-- order. That is what makes the visibility frontier sound: a reader that returns a row with
-- transaction id x < xmin knows every row with a lower position has a transaction id <= x, hence
-- belongs to a transaction that has already finished and is either visible now or never will be.
-- The lock is session-level (not transaction-level) so it is released right here, not at commit:
-- commits still overlap and share WAL flushes.
CREATE FUNCTION boxoffice_reserve_positions(count integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first_position bigint;
BEGIN
    IF count < 1 THEN
        RAISE EXCEPTION 'boxoffice_reserve_positions: count must be positive, got %', count;
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'boxoffice_reserve_positions must run before the transaction writes anything';
    END IF;
    PERFORM pg_advisory_lock(1651470447, 1);
    BEGIN
        PERFORM pg_current_xact_id();
        first_position := nextval('events_global_position_seq');
        IF count > 1 THEN
            PERFORM setval('events_global_position_seq', first_position + count - 1);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM pg_advisory_unlock(1651470447, 1);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(1651470447, 1);
    RETURN first_position;
END;
$$;
