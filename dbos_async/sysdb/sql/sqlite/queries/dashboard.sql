-- What the dashboard reads besides listing workflows: read-only, never on a hot path.

-- name: queue_counts
-- How many workflows each queue holds ENQUEUED and PENDING (running): (queue, status, count).
SELECT queue_name, status, count(*) FROM dbos_workflow_status
WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'PENDING')
GROUP BY queue_name, status;

-- name: queue_starts
-- How many workflows of each queue a worker claimed (started) per period of :period ms
-- since :since: (queue, period index from :since, count).
SELECT queue_name, (started_at_epoch_ms - :since) / :period, count(*)
FROM dbos_workflow_status
WHERE queue_name IS NOT NULL AND started_at_epoch_ms >= :since
GROUP BY 1, 2;

-- name: workflow_streams
-- The values of every stream of a workflow, by key then offset, at most a number of
-- rows: (key, "offset", value, closed).
SELECT key, "offset", value, closed FROM dbos_streams
WHERE workflow_uuid = ? ORDER BY key, "offset" LIMIT ?;
