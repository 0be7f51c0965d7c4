-- Ownership by process: leases, and the owner of each running workflow.
-- Leases: each launched process (one launch) has a row here that it renews several times
-- per lease period; its lease has expired once lease_expires_at (epoch ms) is past.
-- process_tag (boot, PID namespace, start time) tells a reused PID from the process that
-- held the lease.
CREATE TABLE dbos_executors (
    process_id TEXT PRIMARY KEY,
    executor_id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_tag TEXT,
    application_version TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL
);

-- The process that runs a PENDING workflow (NULL: none yet, or handed back). Every write
-- a workflow makes is conditional on it; a takeover changes it.
ALTER TABLE dbos_workflow_status ADD COLUMN owner TEXT;

CREATE INDEX dbos_workflow_status_owner_idx
    ON dbos_workflow_status (owner)
    WHERE status = 'PENDING';
