-- Leases: each launched process registers here and renews its lease; a process whose
-- lease has expired owns its PENDING workflows only until a live process takes them over
-- (workflows.sql: orphaned_workflows, take_over). Times are the database's clock.

-- name: register_lease
-- Register a launched process ($1 process ID, $2 executor ID, $3 host name, $4 PID, $5 PID
-- start, $6 application version) with a lease of $7 ms from now; and forget processes
-- whose lease expired over a day ago and that own no PENDING workflow.
WITH forgotten AS (
    DELETE FROM dbos_async.executors AS e
    WHERE e.lease_expires_at < dbos_async.now_ms() - 86400000
        AND NOT EXISTS (
            SELECT 1 FROM dbos_async.workflow_status AS w
            WHERE w.owner = e.process_id AND w.status = 'PENDING')
)
INSERT INTO dbos_async.executors (process_id, executor_id, hostname, pid, process_tag,
    application_version, started_at, last_heartbeat_at, lease_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, dbos_async.now_ms(), dbos_async.now_ms(),
    dbos_async.now_ms() + $7)
ON CONFLICT (process_id) DO UPDATE SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
    lease_expires_at = EXCLUDED.lease_expires_at;

-- name: renew_lease
-- Extend process $1's lease to $2 ms from now (even if it had expired: what it still owns
-- is its own again); a row (1) if the process is registered.
UPDATE dbos_async.executors
SET last_heartbeat_at = dbos_async.now_ms(), lease_expires_at = dbos_async.now_ms() + $2
WHERE process_id = $1 RETURNING 1;

-- name: end_lease
-- End process $1's lease now (it stops and hands its workflows back, or it died: its PID
-- is gone), and wake every process's takeover ($2: key).
WITH e AS (
    UPDATE dbos_async.executors
    SET lease_expires_at = LEAST(lease_expires_at, dbos_async.now_ms())
    WHERE process_id = $1 RETURNING 1
)
SELECT pg_notify({channel}, $2) FROM e;

-- name: list_executors
-- Every registered process, oldest first: its row, whether its lease is live, and how many
-- PENDING workflows it owns.
SELECT e.process_id, e.executor_id, e.hostname, e.pid, e.process_tag, e.application_version,
    e.started_at, e.last_heartbeat_at, e.lease_expires_at,
    e.lease_expires_at > dbos_async.now_ms(),
    (SELECT count(*) FROM dbos_async.workflow_status AS w
        WHERE w.owner = e.process_id AND w.status = 'PENDING')
FROM dbos_async.executors AS e
ORDER BY e.started_at, e.process_id;
