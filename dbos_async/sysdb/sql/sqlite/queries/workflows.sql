-- The system database's own statements: workflow status rows, step rows, the journal's
-- checkpoint writes and recovery. Placeholders in braces: see sysdb/_queries.py.

-- name: get_workflow
-- The status row of one workflow.
SELECT {workflow_columns} FROM dbos_workflow_status WHERE workflow_uuid = ?;

-- name: insert_workflow
-- Insert a status row unless its ID exists (one row changed if inserted).
INSERT INTO dbos_workflow_status ({workflow_columns})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (workflow_uuid) DO NOTHING;

-- name: finish_workflow
-- Record the outcome of a PENDING workflow the process given owns (status, output,
-- error, updated_at, ID, owner).
UPDATE dbos_workflow_status SET status = ?, output = ?, error = ?, updated_at = ?
WHERE workflow_uuid = ? AND status = 'PENDING' AND owner = ?;

-- name: insert_step
-- Insert a step row unless one exists at its ID, if the process given last owns the
-- workflow (one row changed if inserted).
INSERT INTO dbos_operation_outputs ({step_columns})
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
WHERE EXISTS (SELECT 1 FROM dbos_workflow_status WHERE workflow_uuid = ?1 AND owner = ?9)
ON CONFLICT (workflow_uuid, function_id) DO NOTHING;

-- name: owner_of
-- The owner of a workflow (a row, its owner NULL if none), or no row.
SELECT owner FROM dbos_workflow_status WHERE workflow_uuid = ?;

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

-- name: orphaned_workflows
-- PENDING workflows of an application version and of the functions named in :names (a
-- JSON array: those the caller can run) that no live process runs, oldest first:
-- unowned ones (handed back, resumed or forked by a client), those whose owner's lease
-- has expired (or whose owner is unknown), and those this process owns but does not run
-- (:running, a JSON array of the IDs it runs) and has not touched since :stale.
-- Parameters :version, :names, :me, :stale, :running, :now, :n.
SELECT {w.workflow_columns} FROM dbos_workflow_status AS w
WHERE w.status = 'PENDING' AND w.application_version = :version
    AND w.name IN (SELECT value FROM json_each(:names))
    AND (w.owner IS NULL
        OR (w.owner = :me AND w.updated_at < :stale
            AND w.workflow_uuid NOT IN (SELECT value FROM json_each(:running)))
        OR (w.owner <> :me AND NOT EXISTS (
            SELECT 1 FROM dbos_executors AS e
            WHERE e.process_id = w.owner AND e.lease_expires_at > :now)))
ORDER BY w.created_at LIMIT :n;

-- name: take_over
-- Take over a workflow still PENDING with the owner and recovery attempt count its
-- request saw, if that owner (other than the taker) still has no live lease: count a
-- recovery attempt (past :max it is dead-lettered) and make :me its owner and :executor
-- its executor at :now. Leases are live if they expire after :clock. Parameters :id,
-- :seen_owner, :seen, :max, :me, :executor, :now, :clock. The row if won.
UPDATE dbos_workflow_status SET recovery_attempts = recovery_attempts + 1,
    status = CASE WHEN recovery_attempts + 1 > :max
        THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE status END,
    owner = :me, executor_id = :executor, updated_at = :now
WHERE workflow_uuid = :id AND status = 'PENDING' AND recovery_attempts = :seen
    AND owner IS :seen_owner
    AND (:seen_owner IS NULL OR :seen_owner = :me OR NOT EXISTS (
        SELECT 1 FROM dbos_executors AS e
        WHERE e.process_id = :seen_owner AND e.lease_expires_at > :clock))
RETURNING {workflow_columns};
