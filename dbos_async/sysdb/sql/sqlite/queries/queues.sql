-- Enqueueing and claiming queued workflows, and the registry of declared queues. A
-- claim runs in one BEGIN IMMEDIATE transaction; enqueue order is the rowid.

-- name: enqueue_workflow
-- Insert an ENQUEUED workflow row unless its ID or its deduplication ID is taken.
INSERT INTO dbos_workflow_status ({workflow_columns})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: count_running
-- How many workflows of a queue (partition) run now.
SELECT count(*) FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'PENDING';

-- name: count_started
-- How many workflows of a queue (partition) started within the limiter's period.
SELECT count(*) FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition
    AND started_at_epoch_ms > :now - :period;

-- name: any_ready
-- A row if a workflow of the queue (partition) can be claimed now.
SELECT 1 FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'ENQUEUED'
    AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now)
LIMIT 1;

-- name: claim_queued
-- Make up to :n ENQUEUED workflows of the queue (partition) PENDING on this executor,
-- lowest priority first, then in enqueue order; a claimed workflow's deadline becomes the
-- earlier of the one it inherited and now plus its timeout; the claiming process (:owner)
-- owns it from now on. The rows claimed.
UPDATE dbos_workflow_status SET status = 'PENDING', executor_id = :executor, owner = :owner,
    application_version = :version, started_at_epoch_ms = :now, updated_at = :now,
    workflow_deadline_epoch_ms = CASE
        WHEN workflow_timeout_ms IS NULL THEN workflow_deadline_epoch_ms
        WHEN workflow_deadline_epoch_ms IS NULL THEN :now + workflow_timeout_ms
        ELSE min(workflow_deadline_epoch_ms, :now + workflow_timeout_ms) END
WHERE workflow_uuid IN (SELECT workflow_uuid FROM dbos_workflow_status
    WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'ENQUEUED'
        AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now)
        AND (application_version IS NULL OR application_version = :version)
    ORDER BY priority, rowid LIMIT :n)
RETURNING {workflow_columns};

-- name: queue_partitions
-- The partition keys that have ENQUEUED workflows on a queue.
SELECT DISTINCT queue_partition_key FROM dbos_workflow_status
WHERE queue_name = ? AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL;

-- name: any_expired_enqueued
-- A row if an ENQUEUED workflow's deadline is at or before now (now; workflow ID twice;
-- queue twice: each NULL for any).
SELECT 1 FROM dbos_workflow_status
WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= ?
    AND (? IS NULL OR workflow_uuid = ?) AND (? IS NULL OR queue_name = ?)
LIMIT 1;

-- name: cancel_expired_enqueued
-- Make those CANCELLED (now twice, then as any_expired_enqueued); their IDs.
UPDATE dbos_workflow_status SET status = 'CANCELLED', updated_at = ?
WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= ?
    AND (? IS NULL OR workflow_uuid = ?) AND (? IS NULL OR queue_name = ?)
RETURNING workflow_uuid;

-- name: register_queue
-- Record or update a declared queue (the columns of queue_columns, then updated at).
INSERT INTO dbos_queues ({queue_columns}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    worker_concurrency = excluded.worker_concurrency,
    limiter_limit = excluded.limiter_limit,
    limiter_period_seconds = excluded.limiter_period_seconds,
    priority_enabled = excluded.priority_enabled,
    partition_queue = excluded.partition_queue, updated_at = excluded.updated_at;

-- name: list_queues
-- Every registered queue, by name.
SELECT {queue_columns} FROM dbos_queues ORDER BY name;

-- name: deduplicated_workflow
-- The ENQUEUED or PENDING workflow of queue ? that holds deduplication ID ? (the
-- partial unique index finds it), if any.
SELECT {workflow_columns} FROM dbos_workflow_status
WHERE queue_name = ? AND deduplication_id = ? AND status IN ('ENQUEUED', 'PENDING');
