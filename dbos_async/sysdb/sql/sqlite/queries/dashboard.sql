-- What the dashboard reads besides listing workflows: read-only, never on a hot path.

-- name: queue_counts
-- How many workflows each queue holds ENQUEUED and PENDING (running): (queue, status,
-- count). Each half matches a partial index of its status, never a scan of the table.
SELECT queue_name, 'ENQUEUED', count(*) FROM dbos_workflow_status
WHERE status = 'ENQUEUED' AND queue_name IS NOT NULL
GROUP BY queue_name
UNION ALL
SELECT queue_name, 'PENDING', count(*) FROM dbos_workflow_status
WHERE status = 'PENDING' AND queue_name IS NOT NULL
GROUP BY queue_name;

-- name: queue_starts
-- How many workflows of each registered queue a worker claimed (started) per period of
-- :period ms since :since: (queue, period index from :since, count). One index range
-- per queue (the queues table is small), never a scan of the status table.
SELECT q.name, (w.started_at_epoch_ms - :since) / :period, count(*)
FROM dbos_queues AS q
JOIN dbos_workflow_status AS w
    ON w.queue_name = q.name AND w.started_at_epoch_ms >= :since
GROUP BY 1, 2;

-- name: workflow_streams
-- The values of every stream of a workflow, by key then offset, at most a number of
-- rows: (key, "offset", value, closed).
SELECT key, "offset", value, closed FROM dbos_streams
WHERE workflow_uuid = ? ORDER BY key, "offset" LIMIT ?;
