-- A subscription's page and the log's last committed position in one statement (issue 14).
--
-- A live subscription that reads a short page asks whether committed events lie beyond what it
-- could read (held back by an older appending transaction still open), to poll again soon rather
-- than wait for the next notification. That was a second round trip per page
-- (`SELECT max(global_position) FROM events`); it now comes back with the page, in a column
-- of every row. An empty page is one row whose event columns are NULL. The frontier is computed
-- first, the rows and the maximum then share the statement's later snapshot, so the maximum is at
-- least as recent as it was from the separate query.
CREATE FUNCTION boxoffice_read_page(after_position bigint, max_rows bigint)
RETURNS TABLE (
    global_position bigint, event_id uuid, stream_id text, stream_version bigint, event_type text,
    schema_version integer, payload jsonb, metadata jsonb, recorded_at timestamptz, last_committed bigint
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    frontier bigint := boxoffice_frontier();
BEGIN
    RETURN QUERY
        SELECT page.global_position, page.event_id, page.stream_id, page.stream_version, page.event_type,
               page.schema_version, page.payload, page.metadata, page.recorded_at, head.last_committed
        FROM (SELECT coalesce(max(e.global_position), 0) AS last_committed FROM events e) AS head
        LEFT JOIN LATERAL (
            SELECT * FROM events e
            WHERE e.global_position > after_position AND e.global_position < frontier
            ORDER BY e.global_position LIMIT max_rows
        ) AS page ON true
        ORDER BY page.global_position;
END;
$$;
