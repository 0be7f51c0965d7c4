-- The application database: the outputs of @DBOS.transaction functions, and what tells
-- whether a transaction whose connection was lost during COMMIT committed.

-- name: insert_transaction_output
-- Record a transaction's output inside it; returns its transaction ID and server process.
INSERT INTO dbos_async.transaction_outputs (workflow_uuid, function_id, output, created_at)
VALUES ($1, $2, $3, $4) RETURNING txid_current(), pg_backend_pid();

-- name: insert_transaction_output_fenced
-- insert_transaction_output, if process $5 owns workflow $1 as the transaction sees it (an
-- application database that is the system database too fences its transactions in their
-- own commit); no row if not. No lock: in a REPEATABLE READ or SERIALIZABLE transaction,
-- locking a row a cancel or takeover changed meanwhile would fail it. A takeover racing
-- the commit still gives one outcome: the new owner's run of this step waits on the
-- unique key, then reads the output committed here.
INSERT INTO dbos_async.transaction_outputs (workflow_uuid, function_id, output, created_at)
SELECT $1, $2, $3, $4
WHERE EXISTS (
    SELECT 1 FROM dbos_async.workflow_status WHERE workflow_uuid = $1 AND owner = $5)
RETURNING txid_current(), pg_backend_pid();

-- name: transaction_id
-- A transaction's ID (NULL if it wrote nothing) and its server process, before COMMIT.
SELECT txid_current_if_assigned(), pg_backend_pid();

-- name: transaction_status
-- The fate of transaction $1: "committed", "aborted" or "in progress".
SELECT txid_status($1);

-- name: end_orphan_transaction
-- End server process $2 if it still runs transaction $1 (its COMMIT never arrived).
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE pid = $2 AND backend_xid::text = ($1 % 4294967296)::text;

-- name: get_transaction_output
-- The output a committed transaction recorded for (workflow ID, step ID).
SELECT output FROM dbos_async.transaction_outputs WHERE workflow_uuid = $1 AND function_id = $2;

-- name: delete_transaction_outputs
-- Forget the transaction outputs of deleted workflows ($1: IDs).
DELETE FROM dbos_async.transaction_outputs WHERE workflow_uuid = ANY($1::text[]);
