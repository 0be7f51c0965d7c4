-- The system database's own statements: workflow status rows, step rows, the journal's
-- checkpoint batches and recovery. Placeholders in braces: see sysdb/_queries.py.

-- name: get_workflow
-- The status row of one workflow.
SELECT {workflow_columns} FROM dbos_async.workflow_status WHERE workflow_uuid = $1;

-- name: get_workflows
-- The status rows of several workflows ($1: their IDs).
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE workflow_uuid = ANY($1::text[]);

-- name: insert_workflow
-- Insert a status row unless its ID exists; a row (1) only if it was inserted.
INSERT INTO dbos_async.workflow_status ({workflow_columns})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    $19, $20, $21)
ON CONFLICT (workflow_uuid) DO NOTHING RETURNING 1;

-- name: finish_workflow
-- Record a PENDING workflow's outcome; a workflow of a queue frees a place in it, so its
-- queue's workers are woken. Returns (rows updated, notifications sent).
WITH f AS (
    UPDATE dbos_async.workflow_status
    SET status = $2, output = $3, error = $4, updated_at = $5
    WHERE workflow_uuid = $1 AND status = 'PENDING' RETURNING queue_name
), woke AS (
    SELECT pg_notify({channel}, {queue_key:queue_name}) FROM f WHERE queue_name IS NOT NULL
)
SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM woke);

-- name: insert_step
-- Insert a step row unless one exists at its ID; a row (1) only if it was inserted.
INSERT INTO dbos_async.operation_outputs ({step_columns})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1;

-- name: get_step
-- The step row of one workflow at one step ID.
SELECT {step_columns} FROM dbos_async.operation_outputs
WHERE workflow_uuid = $1 AND function_id = $2;

-- name: get_steps
-- The step rows at several (workflow ID, step ID) keys: $1 the IDs, $2 the step IDs.
SELECT {o.step_columns} FROM dbos_async.operation_outputs AS o
JOIN unnest($1::text[], $2::int[]) AS k(workflow_uuid, function_id)
    ON o.workflow_uuid = k.workflow_uuid AND o.function_id = k.function_id;

-- name: write_batch
-- A checkpoint batch in one statement, every write keyed and skipped if done: workflow
-- rows to insert ($1-$21, one array per column), step rows to insert ($22-$29), PENDING
-- workflows to finish ($30-$34: ID, status, output, error, updated_at; queues they free
-- are woken). Returns one row per write done: (1, workflow) inserted, (2, workflow,
-- step) recorded, (3, workflow) finished, (4) a queue woken.
WITH ins AS (
    INSERT INTO dbos_async.workflow_status ({workflow_columns})
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::int[],
        $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::int[],
        $18::text[], $19::text[], $20::bigint[], $21::bigint[])
    ON CONFLICT (workflow_uuid) DO NOTHING RETURNING workflow_uuid
), steps AS (
    INSERT INTO dbos_async.operation_outputs ({step_columns})
    SELECT * FROM unnest($22::text[], $23::int[], $24::text[], $25::text[], $26::text[],
        $27::text[], $28::bigint[], $29::bigint[])
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING workflow_uuid, function_id
), fin AS (
    UPDATE dbos_async.workflow_status AS w
    SET status = f.status, output = f.output, error = f.error, updated_at = f.updated_at
    FROM unnest($30::text[], $31::text[], $32::text[], $33::text[], $34::bigint[])
        AS f(workflow_uuid, status, output, error, updated_at)
    WHERE w.workflow_uuid = f.workflow_uuid AND w.status = 'PENDING'
    RETURNING w.workflow_uuid, w.queue_name
), woke AS (
    SELECT pg_notify({channel}, {queue_key:queue_name})
    FROM (SELECT DISTINCT queue_name FROM fin WHERE queue_name IS NOT NULL) AS q
)
SELECT 1, workflow_uuid, NULL::int FROM ins
UNION ALL SELECT 2, workflow_uuid, function_id FROM steps
UNION ALL SELECT 3, workflow_uuid, NULL::int FROM fin
UNION ALL SELECT 4, NULL::text, NULL::int FROM woke;

-- name: load_steps
-- Every step row of one workflow, by step ID.
SELECT {step_columns} FROM dbos_async.operation_outputs
WHERE workflow_uuid = $1 ORDER BY function_id;

-- name: load_steps_many
-- Every step row of several workflows ($1: their IDs), by workflow then step ID.
SELECT {step_columns} FROM dbos_async.operation_outputs
WHERE workflow_uuid = ANY($1::text[]) ORDER BY workflow_uuid, function_id;

-- name: pending_workflows
-- The PENDING workflows of an executor ($1) and application version ($2), oldest first.
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2
ORDER BY created_at;

-- name: claim_for_recovery
-- Count a recovery attempt for each workflow still PENDING with the attempt count its
-- claim saw ($1 IDs, $2 counts seen, $3 limits); past its limit it is dead-lettered.
-- $4: now, $5: this claim's token. Returns the rows won.
UPDATE dbos_async.workflow_status AS w
SET recovery_attempts = w.recovery_attempts + 1,
    status = CASE WHEN w.recovery_attempts + 1 > c.max_attempts
        THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
    updated_at = $4, claim_token = $5
FROM unnest($1::text[], $2::int[], $3::int[]) AS c(workflow_uuid, seen, max_attempts)
WHERE w.workflow_uuid = c.workflow_uuid AND w.status = 'PENDING'
    AND w.recovery_attempts = c.seen
RETURNING {w.workflow_columns};

-- name: claimed_for_recovery
-- What a recovery claim whose reply was lost took: the rows ($1: IDs) with its token ($2).
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE workflow_uuid = ANY($1::text[]) AND claim_token = $2;
