-- What the dashboard reads besides listing workflows: read-only, never on a hot path.

-- name: queue_counts
-- How many workflows each queue holds ENQUEUED and PENDING (running): (queue, status, count).
SELECT queue_name, status, count(*) FROM dbos_async.workflow_status
WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'PENDING')
GROUP BY queue_name, status;

-- name: queue_starts
-- How many workflows of each queue a worker claimed (started) per period of $2 ms since
-- $1: (queue, period index from $1, count).
SELECT queue_name, (started_at_epoch_ms - $1::bigint) / $2::bigint, count(*)
FROM dbos_async.workflow_status
WHERE queue_name IS NOT NULL AND started_at_epoch_ms >= $1::bigint
GROUP BY 1, 2;

-- name: workflow_streams
-- The values of every stream of workflow $1, by key then offset, at most $2 rows:
-- (key, "offset", value, closed).
SELECT key, "offset", value, closed FROM dbos_async.streams
WHERE workflow_uuid = $1 ORDER BY key, "offset" LIMIT $2;
