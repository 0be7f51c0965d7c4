-- The current system schema, applied at once to a fresh database (equal to all migrations).
CREATE TABLE dbos_async.workflow_status (
    workflow_uuid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    inputs TEXT,
    output TEXT,
    error TEXT,
    executor_id TEXT,
    application_version TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    queue_name TEXT,
    parent_workflow_id TEXT,
    forked_from TEXT,
    workflow_timeout_ms BIGINT,
    workflow_deadline_epoch_ms BIGINT,
    priority INTEGER NOT NULL DEFAULT 0,
    deduplication_id TEXT,
    queue_partition_key TEXT,
    started_at_epoch_ms BIGINT,
    delay_until_epoch_ms BIGINT,
    enqueue_seq BIGINT
);

CREATE INDEX workflow_status_pending_idx
    ON dbos_async.workflow_status (executor_id, application_version)
    WHERE status = 'PENDING';

CREATE INDEX workflow_status_created_at_idx ON dbos_async.workflow_status (created_at);

CREATE TABLE dbos_async.operation_outputs (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    output TEXT,
    error TEXT,
    child_workflow_id TEXT,
    started_at_epoch_ms BIGINT,
    completed_at_epoch_ms BIGINT,
    PRIMARY KEY (workflow_uuid, function_id)
);

CREATE TABLE dbos_async.notifications (
    message_uuid TEXT PRIMARY KEY,
    destination_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_epoch_ms BIGINT NOT NULL,
    consumed BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGSERIAL NOT NULL
);

CREATE INDEX notifications_unconsumed_idx
    ON dbos_async.notifications (destination_uuid, topic, seq)
    WHERE NOT consumed;

CREATE TABLE dbos_async.workflow_events (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE dbos_async.streams (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value TEXT,
    closed BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (workflow_uuid, key, "offset")
);

CREATE SEQUENCE dbos_async.enqueue_seq;

CREATE INDEX workflow_status_enqueued_idx
    ON dbos_async.workflow_status (queue_name, priority, enqueue_seq)
    WHERE status = 'ENQUEUED';

CREATE INDEX workflow_status_queue_running_idx
    ON dbos_async.workflow_status (queue_name, queue_partition_key)
    WHERE status = 'PENDING' AND queue_name IS NOT NULL;

CREATE INDEX workflow_status_queue_started_idx
    ON dbos_async.workflow_status (queue_name, started_at_epoch_ms)
    WHERE started_at_epoch_ms IS NOT NULL;

CREATE UNIQUE INDEX workflow_status_deduplication_idx
    ON dbos_async.workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

CREATE TABLE dbos_async.queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    limiter_limit INTEGER,
    limiter_period_seconds DOUBLE PRECISION,
    priority_enabled BOOLEAN NOT NULL,
    partition_queue BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL
);
