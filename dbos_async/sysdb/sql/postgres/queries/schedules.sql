-- Schedules (table schedules): DBOS.create_schedule and the schedule loops.

-- name: insert_schedule
-- Store a new schedule ($1 ID, $2 name, $3 workflow, $4 cron, $5 status, $6 context,
-- $7 automatic_backfill, $8 time zone, $9 queue, $10 now); a row unless the name exists.
INSERT INTO dbos_async.schedules
    (schedule_id, schedule_name, workflow_name, schedule, status, context,
     automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $10)
ON CONFLICT (schedule_name) DO NOTHING
RETURNING 1;

-- name: get_schedule
-- One schedule by name.
SELECT schedule_id, schedule_name, workflow_name, schedule, status, context,
    automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at
FROM dbos_async.schedules WHERE schedule_name = $1;

-- name: list_schedules
-- Every schedule, by name.
SELECT schedule_id, schedule_name, workflow_name, schedule, status, context,
    automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at
FROM dbos_async.schedules ORDER BY schedule_name;

-- name: delete_schedule
-- Delete schedule $1; a row if it existed.
DELETE FROM dbos_async.schedules WHERE schedule_name = $1 RETURNING 1;

-- name: set_schedule_status
-- Set schedule $1's status to $2 at time $3; a row if it exists.
UPDATE dbos_async.schedules SET status = $2, updated_at = $3
WHERE schedule_name = $1
RETURNING 1;

-- name: record_schedule_fired
-- Schedule $1 (by ID) started its slot $2 (epoch ms): last_fired_at never goes back.
UPDATE dbos_async.schedules SET last_fired_at = GREATEST(last_fired_at, $2)
WHERE schedule_id = $1;
