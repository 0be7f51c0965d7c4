-- Queues: what each enqueued workflow needs to be claimed in order and within its
-- queue's limits, the unique index that makes deduplication IDs exclusive while a
-- workflow is active, and the queues that worker processes declared. Enqueue order is
-- the rowid.
ALTER TABLE dbos_workflow_status ADD COLUMN queue_partition_key TEXT;
ALTER TABLE dbos_workflow_status ADD COLUMN started_at_epoch_ms INTEGER;
ALTER TABLE dbos_workflow_status ADD COLUMN delay_until_epoch_ms INTEGER;

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

CREATE TABLE dbos_queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    limiter_limit INTEGER,
    limiter_period_seconds REAL,
    priority_enabled INTEGER NOT NULL,
    partition_queue INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
