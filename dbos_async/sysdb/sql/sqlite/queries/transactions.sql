-- The application database: the outputs of @DBOS.transaction functions.

-- name: insert_transaction_output
-- Record a transaction's output inside it (fails if another run recorded this step).
INSERT INTO dbos_transaction_outputs (workflow_uuid, function_id, output, created_at)
VALUES (?, ?, ?, ?);

-- name: get_transaction_output
-- The output a committed transaction recorded for (workflow ID, step ID).
SELECT output FROM dbos_transaction_outputs WHERE workflow_uuid = ? AND function_id = ?;
