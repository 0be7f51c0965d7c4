-- Enqueueing and claiming queued workflows, and the registry of declared queues.

-- name: enqueue_workflow
-- Insert an ENQUEUED workflow row ($1-$24) in enqueue order unless its ID or its
-- deduplication ID is taken, and wake its queue's workers ($25: key). A row if inserted.
WITH ins AS (
    INSERT INTO dbos_async.workflow_status ({workflow_columns}, enqueue_seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        $18, $19, $20, $21, $22, $23, $24, nextval('dbos_async.enqueue_seq'))
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT pg_notify({channel}, $25) FROM ins;

-- name: claim_queued
-- Claim what the queue allows now (the schema's function): queue, partition key,
-- executor, application version, now (ms), most to claim, the queue-wide concurrency,
-- limiter limit and period (ms), the per-partition concurrency, limiter limit and period
-- (ms), claim token, the claiming process (their owner from now on). Returns the rows
-- claimed.
SELECT {workflow_columns} FROM dbos_async.claim_queued($1::text, $2::text, $3::text,
    $4::text, $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bigint,
    $11::bigint, $12::bigint, $13::text, $14::text);

-- name: claimed_queued
-- What a claim whose reply was lost took: queue $1's PENDING rows with its token ($2).
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE queue_name = $1 AND status = 'PENDING' AND claim_token = $2;

-- name: queue_partitions
-- The partition keys that have ENQUEUED workflows on queue $1.
SELECT DISTINCT queue_partition_key FROM dbos_async.workflow_status
WHERE queue_name = $1 AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL;

-- name: cancel_expired_enqueued
-- Make CANCELLED the ENQUEUED workflows whose deadline is at or before $1 (only workflow
-- $2, or only queue $3, if given); their IDs.
UPDATE dbos_async.workflow_status SET status = 'CANCELLED', updated_at = $1
WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= $1
    AND ($2::text IS NULL OR workflow_uuid = $2) AND ($3::text IS NULL OR queue_name = $3)
RETURNING workflow_uuid;

-- name: register_queues
-- Record or update the queues a process declares in code ($1-$8: one array per column:
-- name, concurrency, worker concurrency, limiter limit and period, priority enabled,
-- partitioned, polling interval; $10-$13: partition concurrency, partition worker
-- concurrency, partition limiter limit and period) at $9. A queue declared at run time
-- keeps its row.
INSERT INTO dbos_async.queues (name, concurrency, worker_concurrency, limiter_limit,
    limiter_period_seconds, priority_enabled, partition_queue, polling_interval_seconds,
    partition_concurrency, partition_worker_concurrency, partition_limiter_limit,
    partition_limiter_period_seconds, updated_at, database_backed)
SELECT q.*, $9, FALSE FROM unnest($1::text[], $2::int[], $3::int[], $4::int[],
    $5::float8[], $6::bool[], $7::bool[], $8::float8[], $10::int[], $11::int[],
    $12::int[], $13::float8[]) AS q
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
WHERE NOT dbos_async.queues.database_backed;

-- name: list_queues
-- Every registered queue, by name.
SELECT {queue_columns} FROM dbos_async.queues ORDER BY name;

-- name: get_queue
-- Queue $1's row, if any.
SELECT {queue_columns} FROM dbos_async.queues WHERE name = $1;

-- name: upsert_queue
-- Declare queue $1 at run time ($2-$8: concurrency, worker concurrency, limiter limit
-- and period, priority enabled, partitioned, polling interval; $9: now; $11-$14:
-- partition concurrency, partition worker concurrency, partition limiter limit and
-- period). An existing row is replaced if $10 or if it only records a declaration in
-- code. Wakes the queue's workers (and every process's watch for new queues) if written.
WITH up AS (
    INSERT INTO dbos_async.queues (name, concurrency, worker_concurrency, limiter_limit,
        limiter_period_seconds, priority_enabled, partition_queue,
        polling_interval_seconds, updated_at, database_backed, partition_concurrency,
        partition_worker_concurrency, partition_limiter_limit,
        partition_limiter_period_seconds)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, TRUE, $11, $12, $13, $14)
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
        updated_at = GREATEST(excluded.updated_at, dbos_async.queues.updated_at + 1),
        database_backed = TRUE
    WHERE $10::bool OR NOT dbos_async.queues.database_backed
    RETURNING 1
)
SELECT pg_notify({channel}, {queue_key:$1::text}) FROM up;

-- name: update_queue
-- Change run-time queue $1's settings ($2-$8 and $11-$14 as for upsert_queue) at $9,
-- only if its row was last written at $10 (no change in between was made); wakes its
-- workers. A row if changed.
WITH up AS (
    UPDATE dbos_async.queues SET concurrency = $2, worker_concurrency = $3,
        limiter_limit = $4, limiter_period_seconds = $5, priority_enabled = $6,
        partition_queue = $7, polling_interval_seconds = $8, updated_at = $9,
        partition_concurrency = $11, partition_worker_concurrency = $12,
        partition_limiter_limit = $13, partition_limiter_period_seconds = $14
    WHERE name = $1 AND database_backed AND updated_at = $10
    RETURNING 1
)
SELECT pg_notify({channel}, {queue_key:$1::text}) FROM up;

-- name: delete_queue
-- Delete run-time queue $1 (a queue declared in code keeps its row); wakes its workers,
-- which stop. A row if deleted.
WITH del AS (
    DELETE FROM dbos_async.queues WHERE name = $1 AND database_backed RETURNING 1
)
SELECT pg_notify({channel}, {queue_key:$1::text}) FROM del;

-- name: deduplicated_workflow
-- The ENQUEUED or PENDING workflow of queue $1 that holds deduplication ID $2 (the
-- partial unique index finds it), if any.
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE queue_name = $1 AND deduplication_id = $2 AND status IN ('ENQUEUED', 'PENDING');
