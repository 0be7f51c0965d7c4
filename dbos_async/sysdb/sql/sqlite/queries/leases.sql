-- Leases: each launched process registers here and renews its lease; a process whose
-- lease has expired owns its PENDING workflows only until a live process takes them over
-- (workflows.sql: orphaned_workflows, take_over). Times are epoch ms.

-- name: forget_executors
-- Forget processes whose lease expired before :before and that own no PENDING workflow.
DELETE FROM dbos_executors
WHERE lease_expires_at < :before
    AND NOT EXISTS (
        SELECT 1 FROM dbos_workflow_status AS w
        WHERE w.owner = dbos_executors.process_id AND w.status = 'PENDING');

-- name: register_lease
-- Register a launched process with a lease until :expires.
INSERT INTO dbos_executors (process_id, executor_id, hostname, pid, process_tag,
    application_version, started_at, last_heartbeat_at, lease_expires_at)
VALUES (:process, :executor, :host, :pid, :process_tag, :version, :now, :now, :expires)
ON CONFLICT (process_id) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at,
    lease_expires_at = excluded.lease_expires_at;

-- name: renew_lease
-- Extend a process's lease (now, expiry, process ID); one row changed if registered.
UPDATE dbos_executors SET last_heartbeat_at = ?, lease_expires_at = ? WHERE process_id = ?;

-- name: end_lease
-- End a process's lease now (now, process ID): it stops and hands its workflows back,
-- or it died.
UPDATE dbos_executors SET lease_expires_at = min(lease_expires_at, ?1) WHERE process_id = ?2;

-- name: list_executors
-- Every registered process, oldest first: its row, whether its lease is live at the time
-- given, and how many PENDING workflows it owns.
SELECT e.process_id, e.executor_id, e.hostname, e.pid, e.process_tag, e.application_version,
    e.started_at, e.last_heartbeat_at, e.lease_expires_at, e.lease_expires_at > ?,
    (SELECT count(*) FROM dbos_workflow_status AS w
        WHERE w.owner = e.process_id AND w.status = 'PENDING')
FROM dbos_executors AS e
ORDER BY e.started_at, e.process_id;
