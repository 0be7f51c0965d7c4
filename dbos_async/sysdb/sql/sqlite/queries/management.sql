-- Listing, cancelling, resuming and forking workflows.

-- name: list_workflows
-- Workflows matching every filter given (a NULL filter matches all; :ids and :statuses
-- are JSON arrays), oldest first.
SELECT {workflow_columns} FROM dbos_workflow_status
WHERE (:ids IS NULL OR workflow_uuid IN (SELECT value FROM json_each(:ids)))
    AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
    AND (:name IS NULL OR name = :name)
    AND (:start IS NULL OR created_at >= :start)
    AND (:end IS NULL OR created_at <= :end)
    AND (:queue IS NULL OR queue_name = :queue)
    AND (:parent IS NULL OR parent_workflow_id = :parent)
    AND (NOT :queued_only OR queue_name IS NOT NULL)
    AND (:prefix IS NULL OR substr(workflow_uuid, 1, length(:prefix)) = :prefix)
ORDER BY created_at ASC, workflow_uuid ASC LIMIT :limit OFFSET :offset;

-- name: list_workflows_newest_first
-- list_workflows (the same parameters), newest first.
SELECT {workflow_columns} FROM dbos_workflow_status
WHERE (:ids IS NULL OR workflow_uuid IN (SELECT value FROM json_each(:ids)))
    AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
    AND (:name IS NULL OR name = :name)
    AND (:start IS NULL OR created_at >= :start)
    AND (:end IS NULL OR created_at <= :end)
    AND (:queue IS NULL OR queue_name = :queue)
    AND (:parent IS NULL OR parent_workflow_id = :parent)
    AND (NOT :queued_only OR queue_name IS NOT NULL)
    AND (:prefix IS NULL OR substr(workflow_uuid, 1, length(:prefix)) = :prefix)
ORDER BY created_at DESC, workflow_uuid DESC LIMIT :limit OFFSET :offset;

-- name: cancel_workflow
-- Make a PENDING or ENQUEUED workflow CANCELLED (updated at, ID).
UPDATE dbos_workflow_status SET status = 'CANCELLED', updated_at = ?
WHERE workflow_uuid = ? AND status IN ('PENDING', 'ENQUEUED');

-- name: resume_workflow
-- Run a CANCELLED or dead-lettered workflow again (executor, owner, now, ID): one of a
-- queue goes back to ENQUEUED (its queue's limits apply again; no owner), any other
-- becomes PENDING on the executor given, owned by the process given (NULL: unowned, for
-- the first live process to take over). The row if resumed.
UPDATE dbos_workflow_status SET
    status = CASE WHEN queue_name IS NULL THEN 'PENDING' ELSE 'ENQUEUED' END,
    executor_id = CASE WHEN queue_name IS NULL THEN ? END,
    owner = CASE WHEN queue_name IS NULL THEN ? END,
    started_at_epoch_ms = CASE WHEN queue_name IS NULL THEN started_at_epoch_ms END,
    recovery_attempts = 0, updated_at = ?, output = NULL, error = NULL,
    workflow_deadline_epoch_ms = NULL
WHERE workflow_uuid = ? AND status IN ('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
RETURNING {workflow_columns};

-- name: copy_steps
-- Copy the step rows of a workflow below a step ID to another (new ID, source ID, step).
INSERT INTO dbos_operation_outputs ({step_columns})
SELECT ?, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms
FROM dbos_operation_outputs
WHERE workflow_uuid = ? AND function_id < ?;

-- name: cancelled_among
-- Which of these workflows (a JSON array of IDs) are CANCELLED or no longer exist.
SELECT k.value FROM json_each(?) AS k
LEFT JOIN dbos_workflow_status AS w ON w.workflow_uuid = k.value
WHERE w.workflow_uuid IS NULL OR w.status = 'CANCELLED';

-- name: not_owned
-- Which of these workflows (a JSON array of IDs) the process given does not own (any
-- more), or no longer exist.
SELECT k.value FROM json_each(?) AS k
LEFT JOIN dbos_workflow_status AS w ON w.workflow_uuid = k.value
WHERE w.workflow_uuid IS NULL OR w.owner IS NOT ?;

-- name: delete_workflows
-- Delete workflows (a JSON array of IDs) with every row that refers to them (ON DELETE
-- CASCADE: steps, messages, events, streams). The IDs deleted.
DELETE FROM dbos_workflow_status WHERE workflow_uuid IN (SELECT value FROM json_each(?))
RETURNING workflow_uuid;
