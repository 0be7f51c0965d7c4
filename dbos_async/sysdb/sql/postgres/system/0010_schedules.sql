-- Schedules as data (DBOS.create_schedule): each row a named cron schedule of a workflow,
-- run by every launched process that has the workflow (or, with queue_name, enqueued
-- by it), each slot once across processes (its workflow ID is derived from the
-- schedule's name and the slot). status is 'ACTIVE' or 'PAUSED'; context is the
-- serialized value every run gets; last_fired_at (epoch ms) is the latest slot started,
-- from which automatic_backfill runs the slots missed while no process ran.
CREATE TABLE dbos_async.schedules (
    schedule_id TEXT PRIMARY KEY,
    schedule_name TEXT NOT NULL UNIQUE,
    workflow_name TEXT NOT NULL,
    schedule TEXT NOT NULL,
    status TEXT NOT NULL,
    context TEXT,
    automatic_backfill BOOLEAN NOT NULL DEFAULT FALSE,
    cron_timezone TEXT,
    queue_name TEXT,
    last_fired_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
