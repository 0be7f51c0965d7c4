-- The system database's own statements: workflow status rows, step rows, the journal's
-- checkpoint writes and recovery. Placeholders in braces: see sysdb/_queries.py.

-- name: get_workflow
-- The status row of one workflow.
SELECT {workflow_columns} FROM dbos_workflow_status WHERE workflow_uuid = ?;

-- name: insert_workflow
-- Insert a status row unless its ID exists (one row changed if inserted).
INSERT INTO dbos_workflow_status ({workflow_columns})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_uuid) DO NOTHING;

-- name: finish_workflow
-- Record a PENDING workflow's outcome (status, output, error, updated_at, ID).
UPDATE dbos_workflow_status SET status = ?, output = ?, error = ?, updated_at = ?
WHERE workflow_uuid = ? AND status = 'PENDING';

-- name: insert_step
-- Insert a step row unless one exists at its ID (one row changed if inserted).
INSERT INTO dbos_operation_outputs ({step_columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_uuid, function_id) DO NOTHING;

-- name: get_step
-- The step row of one workflow at one step ID.
SELECT {step_columns} FROM dbos_operation_outputs WHERE workflow_uuid = ? AND function_id = ?;

-- name: load_steps
-- Every step row of one workflow, by step ID.
SELECT {step_columns} FROM dbos_operation_outputs WHERE workflow_uuid = ? ORDER BY function_id;

-- name: load_steps_many
-- Every step row of several workflows (their IDs as a JSON array), by workflow, step ID.
SELECT {step_columns} FROM dbos_operation_outputs
WHERE workflow_uuid IN (SELECT value FROM json_each(?)) ORDER BY workflow_uuid, function_id;

-- name: pending_workflows
-- The PENDING workflows of an executor and application version, oldest first.
SELECT {workflow_columns} FROM dbos_workflow_status
WHERE status = 'PENDING' AND executor_id = ? AND application_version = ?
ORDER BY created_at;

-- name: claim_for_recovery
-- Count a recovery attempt for a workflow still PENDING with the attempt count its claim
-- saw (max attempts, now, ID, count seen); past the limit it is dead-lettered. The row if
-- won.
UPDATE dbos_workflow_status SET recovery_attempts = recovery_attempts + 1,
    status = CASE WHEN recovery_attempts + 1 > ?
        THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE status END,
    updated_at = ?
WHERE workflow_uuid = ? AND status = 'PENDING' AND recovery_attempts = ?
RETURNING {workflow_columns};
