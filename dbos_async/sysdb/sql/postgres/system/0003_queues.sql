-- Queues: what each enqueued workflow needs to be claimed in order and within its
-- queue's limits, the unique index that makes deduplication IDs exclusive while a
-- workflow is active, and the queues that worker processes declared.
ALTER TABLE dbos_async.workflow_status ADD COLUMN queue_partition_key TEXT;
ALTER TABLE dbos_async.workflow_status ADD COLUMN started_at_epoch_ms BIGINT;
ALTER TABLE dbos_async.workflow_status ADD COLUMN delay_until_epoch_ms BIGINT;
ALTER TABLE dbos_async.workflow_status ADD COLUMN enqueue_seq BIGINT;

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
