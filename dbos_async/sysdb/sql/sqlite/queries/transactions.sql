-- The application database: the outputs of @DBOS.transaction functions.

-- name: insert_transaction_output
-- Record a transaction's output inside it (fails if another run recorded this step).
INSERT INTO dbos_transaction_outputs (workflow_uuid, function_id, output, created_at)
VALUES (?, ?, ?, ?);

-- name: insert_transaction_output_fenced
-- insert_transaction_output, if the process given owns the workflow (an application
-- database in the system database's file fences its transactions in the same commit);
-- no row changed if not.
INSERT INTO dbos_transaction_outputs (workflow_uuid, function_id, output, created_at)
SELECT ?1, ?2, ?3, ?4
WHERE EXISTS (SELECT 1 FROM dbos_workflow_status WHERE workflow_uuid = ?1 AND owner = ?5);

-- name: get_transaction_output
-- The output a committed transaction recorded for (workflow ID, step ID).
SELECT output FROM dbos_transaction_outputs WHERE workflow_uuid = ? AND function_id = ?;

-- name: delete_transaction_outputs
-- Forget the transaction outputs of deleted workflows (a JSON array of IDs).
DELETE FROM dbos_transaction_outputs WHERE workflow_uuid IN (SELECT value FROM json_each(?));
