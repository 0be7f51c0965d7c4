-- Enqueueing and claiming queued workflows, and the registry of declared queues. A
-- claim runs in one BEGIN IMMEDIATE transaction; enqueue order is the rowid.

-- name: enqueue_workflow
-- Insert an ENQUEUED workflow row unless its ID or its deduplication ID is taken.
INSERT INTO dbos_workflow_status ({workflow_columns})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: count_running_queue
-- How many workflows of a queue (all its partitions) run now.
SELECT count(*) FROM dbos_workflow_status WHERE queue_name = :queue AND status = 'PENDING';

-- name: count_started_queue
-- How many workflows of a queue (all its partitions) started within the queue-wide
-- limiter's period.
SELECT count(*) FROM dbos_workflow_status
WHERE queue_name = :queue AND started_at_epoch_ms > :now - :period;

-- name: count_running
-- How many workflows of a queue's partition run now.
SELECT count(*) FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'PENDING';

-- name: count_started
-- How many workflows of a queue's partition started within the partition limiter's
-- period.
SELECT count(*) FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition
    AND started_at_epoch_ms > :now - :partition_period;

-- name: any_ready
-- A row if a workflow of the queue (partition) can be claimed now by this process (the
-- application-version rule of claim_queued included, so that workflows only another
-- version may run do not make every idle poll take the write lock).
SELECT 1 FROM dbos_workflow_status
WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'ENQUEUED'
    AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now)
    AND (application_version = :version OR (application_version IS NULL
        AND COALESCE((SELECT version_name = :version FROM dbos_application_versions
            ORDER BY version_timestamp DESC, version_name DESC LIMIT 1), 1)))
LIMIT 1;

-- name: claim_queued
-- Make up to :n ENQUEUED workflows of the queue (partition) PENDING on this executor,
-- lowest priority first, then in enqueue order; a claimed workflow's deadline becomes the
-- earlier of the one it inherited and now plus its timeout; the claiming process (:owner)
-- owns it from now on. A workflow naming no application version is claimed only by a
-- process of the latest version (or while none is registered). The rows claimed.
UPDATE dbos_workflow_status SET status = 'PENDING', executor_id = :executor, owner = :owner,
    application_version = :version, started_at_epoch_ms = :now, updated_at = :now,
    workflow_deadline_epoch_ms = CASE
        WHEN workflow_timeout_ms IS NULL THEN workflow_deadline_epoch_ms
        WHEN workflow_deadline_epoch_ms IS NULL THEN :now + workflow_timeout_ms
        ELSE min(workflow_deadline_epoch_ms, :now + workflow_timeout_ms) END
WHERE workflow_uuid IN (SELECT workflow_uuid FROM dbos_workflow_status
    WHERE queue_name = :queue AND queue_partition_key IS :partition AND status = 'ENQUEUED'
        AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now)
        AND (application_version = :version OR (application_version IS NULL
            AND COALESCE((SELECT version_name = :version FROM dbos_application_versions
                ORDER BY version_timestamp DESC, version_name DESC LIMIT 1), 1)))
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
-- Record or update a queue a process declares in code (name, concurrency, worker
-- concurrency, limiter limit and period, priority enabled, partitioned, polling interval,
-- partition concurrency, partition worker concurrency, partition limiter limit and
-- period, updated at). A queue declared at run time keeps its row.
INSERT INTO dbos_queues (name, concurrency, worker_concurrency, limiter_limit,
    limiter_period_seconds, priority_enabled, partition_queue, polling_interval_seconds,
    partition_concurrency, partition_worker_concurrency, partition_limiter_limit,
    partition_limiter_period_seconds, updated_at, database_backed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    worker_concurrency = excluded.worker_concurrency,
    limiter_limit = excluded.limiter_limit,
    limiter_period_seconds = excluded.limiter_period_seconds,
    priority_enabled = excluded.priority_enabled,
    partition_queue = excluded.partition_queue,
    polling_interval_seconds = excluded.polling_interval_seconds,
    partition_concurrency = excluded.partition_concurrency,
    partition_worker_concurrency = excluded.partition_worker_concurrency,
    partition_limiter_limit = excluded.partition_limiter_limit,
    partition_limiter_period_seconds = excluded.partition_limiter_period_seconds,
    updated_at = excluded.updated_at
WHERE NOT dbos_queues.database_backed;

-- name: list_queues
-- Every registered queue, by name.
SELECT {queue_columns} FROM dbos_queues ORDER BY name;

-- name: get_queue
-- A queue's row, if any.
SELECT {queue_columns} FROM dbos_queues WHERE name = ?;

-- name: upsert_queue
-- Declare a queue at run time (name, concurrency, worker concurrency, limiter limit and
-- period, priority enabled, partitioned, polling interval, partition concurrency,
-- partition worker concurrency, partition limiter limit and period, now). An existing
-- row is replaced if the last parameter is 1 or if it only records a declaration in code.
INSERT INTO dbos_queues (name, concurrency, worker_concurrency, limiter_limit,
    limiter_period_seconds, priority_enabled, partition_queue, polling_interval_seconds,
    partition_concurrency, partition_worker_concurrency, partition_limiter_limit,
    partition_limiter_period_seconds, updated_at, database_backed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    worker_concurrency = excluded.worker_concurrency,
    limiter_limit = excluded.limiter_limit,
    limiter_period_seconds = excluded.limiter_period_seconds,
    priority_enabled = excluded.priority_enabled,
    partition_queue = excluded.partition_queue,
    polling_interval_seconds = excluded.polling_interval_seconds,
    partition_concurrency = excluded.partition_concurrency,
    partition_worker_concurrency = excluded.partition_worker_concurrency,
    partition_limiter_limit = excluded.partition_limiter_limit,
    partition_limiter_period_seconds = excluded.partition_limiter_period_seconds,
    updated_at = max(excluded.updated_at, dbos_queues.updated_at + 1),
    database_backed = 1
WHERE ? OR NOT dbos_queues.database_backed;

-- name: update_queue
-- Change a run-time queue's settings (concurrency, worker concurrency, limiter limit and
-- period, priority enabled, partitioned, polling interval, partition concurrency,
-- partition worker concurrency, partition limiter limit and period, now), only if its row
-- was last written at the given time (no change in between was made), by name.
UPDATE dbos_queues SET concurrency = ?, worker_concurrency = ?, limiter_limit = ?,
    limiter_period_seconds = ?, priority_enabled = ?, partition_queue = ?,
    polling_interval_seconds = ?, partition_concurrency = ?,
    partition_worker_concurrency = ?, partition_limiter_limit = ?,
    partition_limiter_period_seconds = ?, updated_at = ?
WHERE updated_at = ? AND name = ? AND database_backed;

-- name: delete_queue
-- Delete a run-time queue (a queue declared in code keeps its row), by name.
DELETE FROM dbos_queues WHERE name = ? AND database_backed;

-- name: deduplicated_workflow
-- The ENQUEUED or PENDING workflow of queue ? that holds deduplication ID ? (the
-- partial unique index finds it), if any.
SELECT {workflow_columns} FROM dbos_workflow_status
WHERE queue_name = ? AND deduplication_id = ? AND status IN ('ENQUEUED', 'PENDING');
