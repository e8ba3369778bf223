-- One round trip per append transaction (issue 14).
--
-- Before, an append transaction was five round trips: BEGIN with the stream locks, a read of the
-- streams' versions, a read of the batch's idempotency keys, the insert, the key insert, COMMIT;
-- the planning in between ran in the client. `boxoffice_append` does all of it in one statement,
-- so a client that calls it outside an explicit transaction commits the whole batch in that same
-- round trip (the statement's implicit transaction).
--
-- Arguments: one entry per append in `a_*` (stream, expected version: -1 for any, 0 for no stream,
-- n for exactly n; event count; idempotency key or NULL; metadata), one entry per event in `e_*`,
-- the appends' events one after another (`e_appends`: the 1-based index of each event's append).
-- `lock_keys` are the batch's stream lock keys in the order to take them (sorted, so batches sharing streams cannot deadlock). With `all_or_nothing` the
-- first refused append refuses the whole batch and nothing is written; otherwise each append is
-- decided on its own and the accepted ones are written together. `notify_channel`, when not NULL,
-- is notified inside the transaction (for callers that commit it themselves).
--
-- Appends are decided in order, each seeing the ones accepted before it, exactly as before:
--   * a key already stored: the same stream and event ids replay the stored result (outcome 1),
--     anything else is a reused key (4);
--   * a key of an append accepted earlier in the batch: the same stream and events share its
--     result (1), anything else is a reused key (4);
--   * otherwise the expected version is checked against the stream's version (3 when it does not
--     match, `version` then being the actual one), and the append is written (0).
-- One row per append comes back: outcome, resulting stream version, first and last position.
--
-- A write that bypassed the stream locks (the unique version constraint or an idempotency key
-- committed first) raises serialization_failure (40001): the statement rolls back and the client
-- runs the batch again, which then sees the winner.
CREATE FUNCTION boxoffice_append(
    all_or_nothing boolean,
    lock_keys bigint[],
    a_streams text[],
    a_expected bigint[],
    a_counts integer[],
    a_keys text[],
    a_metadata jsonb[],
    e_ids uuid[],
    e_types text[],
    e_schema_versions integer[],
    e_payloads jsonb[],
    e_appends integer[],
    notify_channel text
) RETURNS TABLE (outcome smallint, version bigint, first_position bigint, last_position bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(a_streams, 1), 0);
    outcomes smallint[] := array_fill(0::smallint, ARRAY[n]);
    versions bigint[] := array_fill(0::bigint, ARRAY[n]);
    firsts bigint[] := array_fill(0::bigint, ARRAY[n]);
    lasts bigint[] := array_fill(0::bigint, ARRAY[n]);
    starts integer[] := array_fill(0, ARRAY[n]);
    same_as integer[] := array_fill(0, ARRAY[n]);
    staged_keys text[] := array_fill(NULL::text, ARRAY[n]);
    stream_names text[];
    stream_versions bigint[];
    key_appends integer[] := '{}';
    next_event integer := 1;
    total bigint := 0;
    refused boolean := false;
    reused boolean;
    first_reserved bigint;
    written bigint;
    i integer;
    j integer;
    slot integer;
    current_version bigint;
    event_count integer;
    stored record;
BEGIN
    PERFORM pg_advisory_xact_lock(t.key) FROM unnest(lock_keys) WITH ORDINALITY AS t(key, place) ORDER BY t.place;

    SELECT array_agg(u.s ORDER BY u.s),
           array_agg(coalesce((SELECT max(e.stream_version) FROM events e WHERE e.stream_id = u.s), 0) ORDER BY u.s)
    INTO stream_names, stream_versions
    FROM (SELECT DISTINCT s FROM unnest(a_streams) AS s) AS u;

    FOR i IN 1 .. n LOOP
        event_count := a_counts[i];
        starts[i] := next_event;
        next_event := next_event + event_count;
        IF a_keys[i] IS NOT NULL THEN
            reused := false;
            SELECT ik.stream_id, ik.event_ids, ik.stream_version, ik.first_global_position, ik.last_global_position
            INTO stored FROM idempotency_keys ik WHERE ik.key = a_keys[i];
            IF FOUND THEN
                reused := stored.stream_id <> a_streams[i]
                          OR stored.event_ids <> e_ids[starts[i] : starts[i] + event_count - 1];
                IF NOT reused THEN
                    outcomes[i] := 1;
                    versions[i] := stored.stream_version;
                    firsts[i] := stored.first_global_position;
                    lasts[i] := stored.last_global_position;
                END IF;
            ELSE
                j := array_position(staged_keys, a_keys[i]);
                IF j IS NOT NULL THEN
                    reused := NOT (a_streams[j] = a_streams[i] AND a_counts[j] = event_count
                        AND e_ids[starts[j] : starts[j] + event_count - 1] = e_ids[starts[i] : starts[i] + event_count - 1]
                        AND e_types[starts[j] : starts[j] + event_count - 1] = e_types[starts[i] : starts[i] + event_count - 1]
                        AND e_schema_versions[starts[j] : starts[j] + event_count - 1]
                            = e_schema_versions[starts[i] : starts[i] + event_count - 1]
                        AND e_payloads[starts[j] : starts[j] + event_count - 1]
                            = e_payloads[starts[i] : starts[i] + event_count - 1]);
                    IF NOT reused THEN
                        outcomes[i] := 1;
                        same_as[i] := j;
                    END IF;
                END IF;
            END IF;
            IF reused THEN
                outcomes[i] := 4;
                refused := true;
            END IF;
            IF outcomes[i] <> 0 THEN
                CONTINUE;
            END IF;
        END IF;
        slot := array_position(stream_names, a_streams[i]);
        current_version := stream_versions[slot];
        IF a_expected[i] >= 0 AND a_expected[i] <> current_version THEN
            outcomes[i] := 3;
            versions[i] := current_version;
            refused := true;
            CONTINUE;
        END IF;
        stream_versions[slot] := current_version + event_count;
        versions[i] := current_version + event_count;
        firsts[i] := total;
        lasts[i] := total + event_count - 1;
        total := total + event_count;
        IF a_keys[i] IS NOT NULL THEN
            staged_keys[i] := a_keys[i];
            key_appends := key_appends || i;
        END IF;
    END LOOP;

    IF all_or_nothing AND refused THEN
        RETURN QUERY SELECT * FROM unnest(outcomes, versions, firsts, lasts);
        RETURN;
    END IF;

    IF total > 0 THEN
        -- Evaluated before any row is inserted: it announces the batch's positions to readers
        -- (the frontier) before they exist.
        first_reserved := boxoffice_reserve_positions(total::integer);
        INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type, schema_version, payload, metadata)
        SELECT first_reserved + firsts[ev.a] + (ev.n - starts[ev.a]), ev.id, a_streams[ev.a],
               versions[ev.a] - a_counts[ev.a] + (ev.n - starts[ev.a]) + 1, ev.ty, ev.sv, ev.pl, a_metadata[ev.a]
        FROM unnest(e_ids, e_types, e_schema_versions, e_payloads, e_appends) WITH ORDINALITY AS ev(id, ty, sv, pl, a, n)
        WHERE outcomes[ev.a] = 0
        ORDER BY 3, 4
        ON CONFLICT (stream_id, stream_version) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written <> total THEN
            RAISE EXCEPTION 'boxoffice_append: a write that bypassed the stream locks got there first'
                USING ERRCODE = 'serialization_failure';
        END IF;
        FOR i IN 1 .. n LOOP
            IF outcomes[i] = 0 THEN
                firsts[i] := first_reserved + firsts[i];
                lasts[i] := first_reserved + lasts[i];
            END IF;
        END LOOP;
        IF array_length(key_appends, 1) > 0 THEN
            INSERT INTO idempotency_keys (key, stream_id, event_ids, stream_version, first_global_position, last_global_position)
            SELECT a_keys[t.a], a_streams[t.a], e_ids[starts[t.a] : starts[t.a] + a_counts[t.a] - 1], versions[t.a], firsts[t.a], lasts[t.a]
            FROM unnest(key_appends) AS t(a)
            ON CONFLICT (key) DO NOTHING;
            GET DIAGNOSTICS written = ROW_COUNT;
            IF written <> array_length(key_appends, 1) THEN
                RAISE EXCEPTION 'boxoffice_append: an idempotency key of the batch was committed by a concurrent append'
                    USING ERRCODE = 'serialization_failure';
            END IF;
        END IF;
        IF notify_channel IS NOT NULL THEN
            PERFORM pg_notify(notify_channel, '');
        END IF;
    END IF;

    FOR i IN 1 .. n LOOP
        IF same_as[i] > 0 THEN
            versions[i] := versions[same_as[i]];
            firsts[i] := firsts[same_as[i]];
            lasts[i] := lasts[same_as[i]];
        END IF;
    END LOOP;
    RETURN QUERY SELECT * FROM unnest(outcomes, versions, firsts, lasts);
END;
$$;
