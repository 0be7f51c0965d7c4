-- What the dashboard reads besides listing workflows: read-only, never on a hot path.

-- name: queue_counts
-- How many workflows each queue holds ENQUEUED and PENDING (running): (queue, status,
-- count). Each half matches a partial index of its status, never a scan of the table.
SELECT queue_name, 'ENQUEUED', count(*) FROM dbos_async.workflow_status
WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL
GROUP BY queue_name
UNION ALL
SELECT queue_name, 'PENDING', count(*) FROM dbos_async.workflow_status
WHERE status = 'PENDING' AND queue_name IS NOT NULL
GROUP BY queue_name;

-- name: queue_starts
-- How many workflows of each registered queue a worker claimed (started) per period of
-- $2 ms since $1: (queue, period index from $1, count). One index range per queue (the
-- queues table is small), never a scan of the status table.
SELECT q.name, (w.started_at_epoch_ms - $1::bigint) / $2::bigint, count(*)
FROM dbos_async.queues AS q
JOIN dbos_async.workflow_status AS w
    ON w.queue_name = q.name AND w.started_at_epoch_ms >= $1::bigint
GROUP BY 1, 2;

-- name: workflow_streams
-- The values of every stream of workflow $1, by key then offset, at most $2 rows:
-- (key, "offset", value, closed).
SELECT key, "offset", value, closed FROM dbos_async.streams
WHERE workflow_uuid = $1 ORDER BY key, "offset" LIMIT $2;
