-- The visibility frontier depends on this store's own appenders only (invariant I14).
--
-- Before: readers returned rows with transaction_id < pg_snapshot_xmin(pg_current_snapshot()), and
-- that minimum is server-wide, so any open transaction anywhere on the server (another database, an
-- unrelated table) held every reader back for as long as it stayed open.
--
-- Now every appending transaction announces the lowest position it may write with a
-- transaction-level advisory lock, keyed by this store's events table and the low 32 bits of that
-- position, taken *before* the positions are drawn from the sequence. The lock ends with the
-- transaction (commit, rollback or a dropped connection). A reader computes the frontier in one
-- statement and reads rows below it in a later one:
--
--   1. next  := the sequence's next value (read first);
--   2. open  := the lowest position announced by a lock still held (read second);
--   3. frontier := least(next, open); rows with global_position < frontier are returned, by a
--      statement whose snapshot is taken after 1 and 2.
--
-- Why no row below the frontier can commit later (I7): a position p < next was drawn before step 1,
-- so its transaction announced a position <= p before step 1. If that transaction is still open at
-- step 2 its lock is seen and the frontier is <= p; otherwise it had ended before step 2, so its
-- rows are either committed before the snapshot of step 3 (and returned in order) or rolled back
-- (never visible). Transaction ids play no part, so the reservation no longer has to be the
-- transaction's first write.

-- The advisory-lock namespace of this store: its events table's oid, as the signed int4 the
-- two-key advisory functions take (pg_locks shows it back as the oid in `classid`).
CREATE FUNCTION boxoffice_store_lock_key() RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT (CASE WHEN oid::bigint >= 2147483648 THEN oid::bigint - 4294967296 ELSE oid::bigint END)::integer
    FROM pg_class WHERE oid = 'events'::regclass
$$;

CREATE OR REPLACE FUNCTION boxoffice_reserve_positions(count integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    next_position bigint;
    low bigint;
    first_position bigint;
BEGIN
    IF count < 1 THEN
        RAISE EXCEPTION 'boxoffice_reserve_positions: count must be positive, got %', count;
    END IF;
    -- Serialises reservations for a moment (session-level, released below, not at commit) so a
    -- batch's positions are consecutive and equal to the announced one.
    PERFORM pg_advisory_lock(1651470447, 1);
    BEGIN
        SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO next_position
        FROM events_global_position_seq;
        low := next_position & 4294967295;
        PERFORM pg_advisory_xact_lock_shared(
            boxoffice_store_lock_key(),
            (CASE WHEN low >= 2147483648 THEN low - 4294967296 ELSE low END)::integer);
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

-- The lowest position that may still be written by an open appending transaction of this store;
-- every row below it is final. VOLATILE: its two reads happen in order, each when it runs.
CREATE FUNCTION boxoffice_frontier() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_position bigint;
    oldest_open bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO next_position
    FROM events_global_position_seq;
    -- An announced position lies in (next_position - 2^32, next_position]: rebuilt from its low
    -- 32 bits.
    SELECT min(next_position - ((next_position - l.objid::bigint) % 4294967296 + 4294967296) % 4294967296)
    INTO oldest_open
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.mode = 'ShareLock'
      AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
      AND l.classid = 'events'::regclass::oid;
    RETURN least(next_position, oldest_open);
END;
$$;

-- Up to `max_rows` events after `after_position` that lie below the frontier, in position order.
-- The query runs after the frontier is computed, with its own (later) snapshot.
CREATE FUNCTION boxoffice_read_all(after_position bigint, max_rows bigint) RETURNS SETOF events
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    frontier bigint := boxoffice_frontier();
BEGIN
    RETURN QUERY SELECT * FROM events
        WHERE global_position > after_position AND global_position < frontier
        ORDER BY global_position LIMIT max_rows;
END;
$$;

-- The highest readable position (0 for an empty log).
CREATE FUNCTION boxoffice_head_position() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    frontier bigint := boxoffice_frontier();
BEGIN
    RETURN (SELECT coalesce(max(global_position), 0) FROM events WHERE global_position < frontier);
END;
$$;
