-- Schedules (table dbos_schedules): DBOS.create_schedule and the schedule loops.

-- name: insert_schedule
-- Store a new schedule; a row unless a schedule of that name exists.
INSERT INTO dbos_schedules
    (schedule_id, schedule_name, workflow_name, schedule, status, context,
     automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at)
VALUES (:id, :name, :workflow, :schedule, :status, :context,
    :backfill, :tz, :queue, NULL, :now, :now)
ON CONFLICT (schedule_name) DO NOTHING
RETURNING 1;

-- name: get_schedule
-- One schedule by name.
SELECT schedule_id, schedule_name, workflow_name, schedule, status, context,
    automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at
FROM dbos_schedules WHERE schedule_name = :name;

-- name: list_schedules
-- Every schedule, by name.
SELECT schedule_id, schedule_name, workflow_name, schedule, status, context,
    automatic_backfill, cron_timezone, queue_name, last_fired_at, created_at, updated_at
FROM dbos_schedules ORDER BY schedule_name;

-- name: delete_schedule
-- Delete a schedule by name; a row if it existed.
DELETE FROM dbos_schedules WHERE schedule_name = :name RETURNING 1;

-- name: set_schedule_status
-- Set a schedule's status at time :now; a row if it exists.
UPDATE dbos_schedules SET status = :status, updated_at = :now
WHERE schedule_name = :name
RETURNING 1;

-- name: record_schedule_fired
-- A schedule (by ID) started its slot :fired (epoch ms): last_fired_at never goes back.
UPDATE dbos_schedules SET last_fired_at = MAX(COALESCE(last_fired_at, :fired), :fired)
WHERE schedule_id = :id;
