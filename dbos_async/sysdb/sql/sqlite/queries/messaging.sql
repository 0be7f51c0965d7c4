-- Messages, events and streams. Each write runs in one transaction with the step row of
-- the workflow that made it. No notifications: waiters in other processes poll.

-- name: workflow_exists
-- A row if the workflow exists.
SELECT 1 FROM dbos_workflow_status WHERE workflow_uuid = ?;

-- name: send_message
-- Store a message unless its ID was stored before.
INSERT INTO dbos_notifications (message_uuid, destination_uuid, topic, message,
    created_at_epoch_ms)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (message_uuid) DO NOTHING;

-- name: record_message_step
-- The step row of a messaging call (workflow, step ID, name, output, started, completed),
-- unless one exists at its ID.
INSERT INTO dbos_operation_outputs (workflow_uuid, function_id, function_name, output,
    started_at_epoch_ms, completed_at_epoch_ms)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_uuid, function_id) DO NOTHING;

-- name: anything_to_receive
-- A row if a receive has something to do: its step recorded already, or a message waiting
-- (workflow, step ID, workflow, topic). Read-only, so an idle waiter's poll takes no lock.
SELECT 1 FROM dbos_operation_outputs WHERE workflow_uuid = ? AND function_id = ?
UNION ALL
SELECT 1 FROM dbos_notifications WHERE destination_uuid = ? AND topic = ? AND consumed = 0
LIMIT 1;

-- name: consume_message
-- Consume the oldest unconsumed message of a workflow's topic; its text, or no row.
UPDATE dbos_notifications SET consumed = 1
WHERE seq = (SELECT seq FROM dbos_notifications
    WHERE destination_uuid = ? AND topic = ? AND consumed = 0 ORDER BY seq LIMIT 1)
RETURNING message;

-- name: set_event
-- Set (or replace) an event of a workflow.
INSERT INTO dbos_workflow_events (workflow_uuid, key, value) VALUES (?, ?, ?)
ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = excluded.value;

-- name: get_event
-- The value of one event of a workflow.
SELECT value FROM dbos_workflow_events WHERE workflow_uuid = ? AND key = ?;

-- name: get_all_events
-- Every event of a workflow: (key, value).
SELECT key, value FROM dbos_workflow_events WHERE workflow_uuid = ?;

-- name: write_stream
-- Append a value (workflow, key, value, closed, write key; then workflow and key again)
-- at the stream's next offset, unless a write with its key was stored before.
INSERT INTO dbos_streams (workflow_uuid, key, "offset", value, closed, write_key)
SELECT ?, ?, COALESCE(MAX("offset") + 1, 0), ?, ?, ? FROM dbos_streams
WHERE workflow_uuid = ? AND key = ?
ON CONFLICT (workflow_uuid, write_key) WHERE write_key IS NOT NULL DO NOTHING;

-- name: read_stream
-- The values of a stream from an offset on: ("offset", value, closed).
SELECT "offset", value, closed FROM dbos_streams
WHERE workflow_uuid = ? AND key = ? AND "offset" >= ? ORDER BY "offset";
