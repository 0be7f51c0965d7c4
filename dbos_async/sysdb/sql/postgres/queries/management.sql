-- Listing, cancelling, resuming and forking workflows.

-- name: list_workflows
-- Workflows matching every filter given (a NULL filter matches all), oldest first: $1 IDs,
-- $2 statuses, $3 name, $4 created at or after, $5 created at or before, $6 queue,
-- $7 parent, $8 only those of a queue; $9 limit, $10 offset; $11 IDs starting with this.
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE ($1::text[] IS NULL OR workflow_uuid = ANY($1::text[]))
    AND ($2::text[] IS NULL OR status = ANY($2::text[]))
    AND ($3::text IS NULL OR name = $3)
    AND ($4::bigint IS NULL OR created_at >= $4)
    AND ($5::bigint IS NULL OR created_at <= $5)
    AND ($6::text IS NULL OR queue_name = $6)
    AND ($7::text IS NULL OR parent_workflow_id = $7)
    AND (NOT $8::bool OR queue_name IS NOT NULL)
    AND ($11::text IS NULL OR starts_with(workflow_uuid, $11))
ORDER BY created_at ASC, workflow_uuid ASC LIMIT $9 OFFSET $10;

-- name: list_workflows_newest_first
-- list_workflows (the same parameters), newest first.
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE ($1::text[] IS NULL OR workflow_uuid = ANY($1::text[]))
    AND ($2::text[] IS NULL OR status = ANY($2::text[]))
    AND ($3::text IS NULL OR name = $3)
    AND ($4::bigint IS NULL OR created_at >= $4)
    AND ($5::bigint IS NULL OR created_at <= $5)
    AND ($6::text IS NULL OR queue_name = $6)
    AND ($7::text IS NULL OR parent_workflow_id = $7)
    AND (NOT $8::bool OR queue_name IS NOT NULL)
    AND ($11::text IS NULL OR starts_with(workflow_uuid, $11))
ORDER BY created_at DESC, workflow_uuid DESC LIMIT $9 OFFSET $10;

-- name: cancel_workflow
-- Make a PENDING or ENQUEUED workflow CANCELLED at $2, and tell other processes ($3: key).
WITH c AS (
    UPDATE dbos_async.workflow_status SET status = 'CANCELLED', updated_at = $2
    WHERE workflow_uuid = $1 AND status IN ('PENDING', 'ENQUEUED') RETURNING 1
)
SELECT pg_notify({channel}, $3) FROM c;

-- name: resume_workflow
-- Run a CANCELLED or dead-lettered workflow again (at $3, token $4): one of a queue goes
-- back to ENQUEUED (its queue's limits apply again; no owner) and its queue's workers are
-- woken; any other becomes PENDING on executor $2, owned by process $5 (None: unowned,
-- for the first live process to take over). Returns the row, then the notification's
-- column.
WITH r AS (
    UPDATE dbos_async.workflow_status SET
        status = CASE WHEN queue_name IS NULL THEN 'PENDING' ELSE 'ENQUEUED' END,
        executor_id = CASE WHEN queue_name IS NULL THEN $2 END,
        owner = CASE WHEN queue_name IS NULL THEN $5 END,
        started_at_epoch_ms = CASE WHEN queue_name IS NULL THEN started_at_epoch_ms END,
        recovery_attempts = 0, updated_at = $3, output = NULL, error = NULL,
        workflow_deadline_epoch_ms = NULL, claim_token = $4
    WHERE workflow_uuid = $1 AND status IN ('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
    RETURNING {workflow_columns}
)
SELECT r.*, CASE WHEN r.queue_name IS NOT NULL
    THEN pg_notify({channel}, {queue_key:r.queue_name}) END
FROM r;

-- name: resumed_workflow
-- A resume whose reply was lost left its token ($2) on the row of workflow $1.
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE workflow_uuid = $1 AND claim_token = $2;

-- name: copy_steps
-- Copy the step rows of workflow $1 below step $3 to workflow $2 (a fork).
INSERT INTO dbos_async.operation_outputs ({step_columns})
SELECT $2, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms
FROM dbos_async.operation_outputs
WHERE workflow_uuid = $1 AND function_id < $3;

-- name: cancelled_among
-- Which of these workflows ($1: IDs) are CANCELLED or no longer exist.
SELECT k.id FROM unnest($1::text[]) AS k(id)
LEFT JOIN dbos_async.workflow_status AS w ON w.workflow_uuid = k.id
WHERE w.workflow_uuid IS NULL OR w.status = 'CANCELLED';

-- name: delete_workflows
-- Delete workflows ($1: IDs) with every row that refers to them (ON DELETE CASCADE:
-- steps, messages, events, streams), and tell the processes running one to stop it ($2:
-- their "cancel" keys, in the order of $1). The IDs deleted.
WITH d AS (
    DELETE FROM dbos_async.workflow_status WHERE workflow_uuid = ANY($1::text[])
    RETURNING workflow_uuid
)
SELECT d.workflow_uuid, pg_notify({channel}, k.key)
FROM d JOIN unnest($1::text[], $2::text[]) AS k(id, key) ON k.id = d.workflow_uuid;
