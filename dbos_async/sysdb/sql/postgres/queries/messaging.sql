-- Messages, events and streams. Each write is one statement: the row, the step row of the
-- workflow that wrote it (if any: its step ID NULL means none) and the pg_notify that
-- wakes waiters in other processes commit together. Notification keys are passed in,
-- made by sysdb/_keys.py.

-- name: send_message
-- Store a message ($1-$5) unless its ID was stored before, with the sender's step row
-- ($6 workflow, $7 step ID, $8 name, $9 output; at $5), and wake its receiver ($10: key).
-- A sending workflow must be owned by process $11 (assert_owner), or nothing is written.
WITH own AS (
    SELECT dbos_async.assert_owner($6, $11) WHERE $7::int IS NOT NULL
), m AS (
    INSERT INTO dbos_async.notifications (message_uuid, destination_uuid, topic, message,
        created_at_epoch_ms)
    SELECT $1, $2, $3, $4, $5 WHERE $7::int IS NULL OR EXISTS (SELECT 1 FROM own)
    ON CONFLICT (message_uuid) DO NOTHING RETURNING 1
), s AS (
    INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id, function_name,
        output, started_at_epoch_ms, completed_at_epoch_ms)
    SELECT $6::text, $7::int, $8::text, $9::text, $5::bigint, $5::bigint FROM own
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1
)
SELECT pg_notify({channel}, $10);

-- name: receive_message
-- Consume the oldest message of a topic as a recv step of a workflow process $6 owns (the
-- schema's function takes the step row first, so a repeat consumes nothing more); the
-- step row, or none.
SELECT {step_columns} FROM dbos_async.receive_message($1::text, $2::text, $3::int, $4::text,
    $5::bigint, $6::text);

-- name: set_event
-- Set an event ($1 workflow, $2 key, $3 value), with the workflow's step row ($4 step ID,
-- $5 name, $6 output, at $7; none if $4 is NULL: a call from inside a step), and wake its
-- readers ($8: key). The workflow must be owned by process $9 (assert_owner; a NULL
-- owner, a client, checks nothing), or nothing is written.
WITH own AS (
    SELECT dbos_async.assert_owner($1, $9) WHERE $9::text IS NOT NULL
), e AS (
    INSERT INTO dbos_async.workflow_events (workflow_uuid, key, value)
    SELECT $1, $2, $3 WHERE $9::text IS NULL OR EXISTS (SELECT 1 FROM own)
    ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1
), s AS (
    INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id, function_name,
        output, started_at_epoch_ms, completed_at_epoch_ms)
    SELECT $1::text, $4::int, $5::text, $6::text, $7::bigint, $7::bigint
    WHERE $4::int IS NOT NULL AND ($9::text IS NULL OR EXISTS (SELECT 1 FROM own))
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1
)
SELECT pg_notify({channel}, $8);

-- name: get_event
-- The value of one event of a workflow.
SELECT value FROM dbos_async.workflow_events WHERE workflow_uuid = $1 AND key = $2;

-- name: get_all_events
-- Every event of a workflow: (key, value).
SELECT key, value FROM dbos_async.workflow_events WHERE workflow_uuid = $1;

-- name: write_stream
-- Append a value ($3, or the closing mark $4) to stream $2 of workflow $1 at the next
-- offset, unless a write with its key ($10) was stored before; with the workflow's step
-- row ($5 step ID, $6 name, $7 output, at $8; none if $5 is NULL: a call from inside a
-- step); wake its readers ($9: key). The workflow must be owned by process $11
-- (assert_owner; a NULL owner checks nothing), or nothing is written. A concurrent
-- write taking the same offset fails with a unique violation: try again.
WITH own AS (
    SELECT dbos_async.assert_owner($1, $11) WHERE $11::text IS NOT NULL
), w AS (
    INSERT INTO dbos_async.streams (workflow_uuid, key, "offset", value, closed, write_key)
    SELECT $1, $2, COALESCE(MAX("offset") + 1, 0), $3, $4, $10 FROM dbos_async.streams
    WHERE workflow_uuid = $1 AND key = $2
    HAVING $11::text IS NULL OR EXISTS (SELECT 1 FROM own)
    ON CONFLICT (workflow_uuid, write_key) WHERE write_key IS NOT NULL DO NOTHING
    RETURNING 1
), s AS (
    INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id, function_name,
        output, started_at_epoch_ms, completed_at_epoch_ms)
    SELECT $1::text, $5::int, $6::text, $7::text, $8::bigint, $8::bigint
    WHERE $5::int IS NOT NULL AND ($11::text IS NULL OR EXISTS (SELECT 1 FROM own))
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1
)
SELECT pg_notify({channel}, $9);

-- name: read_stream
-- The values of a stream from an offset on: ("offset", value, closed).
SELECT "offset", value, closed FROM dbos_async.streams
WHERE workflow_uuid = $1 AND key = $2 AND "offset" >= $3 ORDER BY "offset";

-- name: announce
-- Tell every listening process about key $1.
SELECT pg_notify({channel}, $1);

-- name: ping
-- Is the LISTEN connection still answering?
SELECT 1;
