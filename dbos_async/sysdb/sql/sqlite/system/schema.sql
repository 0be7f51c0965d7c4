-- The current system schema, applied at once to a fresh database (equal to all migrations).
CREATE TABLE dbos_workflow_status (
    workflow_uuid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    inputs TEXT,
    output TEXT,
    error TEXT,
    executor_id TEXT,
    application_version TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    queue_name TEXT,
    parent_workflow_id TEXT,
    forked_from TEXT,
    workflow_timeout_ms INTEGER,
    workflow_deadline_epoch_ms INTEGER,
    priority INTEGER NOT NULL DEFAULT 0,
    deduplication_id TEXT,
    queue_partition_key TEXT,
    started_at_epoch_ms INTEGER,
    delay_until_epoch_ms INTEGER,
    owner TEXT,
    class_name TEXT,
    config_name TEXT
);

CREATE INDEX dbos_workflow_status_pending_idx
    ON dbos_workflow_status (executor_id, application_version)
    WHERE status = 'PENDING';

CREATE INDEX dbos_workflow_status_owner_idx
    ON dbos_workflow_status (owner)
    WHERE status = 'PENDING';

CREATE INDEX dbos_workflow_status_created_at_idx ON dbos_workflow_status (created_at);

CREATE TABLE dbos_operation_outputs (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    output TEXT,
    error TEXT,
    child_workflow_id TEXT,
    started_at_epoch_ms INTEGER,
    completed_at_epoch_ms INTEGER,
    PRIMARY KEY (workflow_uuid, function_id)
);

CREATE TABLE dbos_notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_uuid TEXT NOT NULL UNIQUE,
    destination_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_epoch_ms INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX dbos_notifications_unconsumed_idx
    ON dbos_notifications (destination_uuid, topic, seq)
    WHERE consumed = 0;

CREATE TABLE dbos_workflow_events (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE dbos_streams (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    write_key TEXT,
    PRIMARY KEY (workflow_uuid, key, "offset")
);

CREATE UNIQUE INDEX dbos_streams_write_key_idx
    ON dbos_streams (workflow_uuid, write_key)
    WHERE write_key IS NOT NULL;

CREATE INDEX dbos_workflow_status_enqueued_idx
    ON dbos_workflow_status (queue_name, priority)
    WHERE status = 'ENQUEUED';

CREATE INDEX dbos_workflow_status_queue_running_idx
    ON dbos_workflow_status (queue_name, queue_partition_key)
    WHERE status = 'PENDING' AND queue_name IS NOT NULL;

CREATE INDEX dbos_workflow_status_queue_started_idx
    ON dbos_workflow_status (queue_name, started_at_epoch_ms)
    WHERE started_at_epoch_ms IS NOT NULL;

CREATE UNIQUE INDEX dbos_workflow_status_deduplication_idx
    ON dbos_workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- Queue workers cancel ENQUEUED workflows past their deadline now and then.
CREATE INDEX dbos_workflow_status_enqueued_deadline_idx
    ON dbos_workflow_status (queue_name, workflow_deadline_epoch_ms)
    WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms IS NOT NULL;


CREATE TABLE dbos_queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    limiter_limit INTEGER,
    limiter_period_seconds REAL,
    priority_enabled INTEGER NOT NULL,
    partition_queue INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    polling_interval_seconds REAL NOT NULL DEFAULT 1.0,
    database_backed INTEGER NOT NULL DEFAULT 0,
    partition_concurrency INTEGER,
    partition_worker_concurrency INTEGER,
    partition_limiter_limit INTEGER,
    partition_limiter_period_seconds REAL
);

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

-- Application versions: each version a process launched with (registered at its first
-- launch), the latest being the one with the highest version_timestamp, which
-- set_latest_application_version moves to now.
CREATE TABLE dbos_application_versions (
    version_id TEXT PRIMARY KEY,
    version_name TEXT NOT NULL UNIQUE,
    version_timestamp INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    application_name TEXT
);

-- Schedules as data (DBOS.create_schedule): each row a named cron schedule of a workflow,
-- run by every launched process that has the workflow (or, with queue_name, enqueued
-- by it), each slot once across processes (its workflow ID is derived from the
-- schedule's name and the slot). status is 'ACTIVE' or 'PAUSED'; context is the
-- serialized value every run gets; last_fired_at (epoch ms) is the latest slot started,
-- from which automatic_backfill runs the slots missed while no process ran.
CREATE TABLE dbos_schedules (
    schedule_id TEXT PRIMARY KEY,
    schedule_name TEXT NOT NULL UNIQUE,
    workflow_name TEXT NOT NULL,
    schedule TEXT NOT NULL,
    status TEXT NOT NULL,
    context TEXT,
    automatic_backfill INTEGER NOT NULL DEFAULT 0,
    cron_timezone TEXT,
    queue_name TEXT,
    last_fired_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
