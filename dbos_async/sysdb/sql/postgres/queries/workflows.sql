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
    $19, $20, $21, $22, $23, $24)
ON CONFLICT (workflow_uuid) DO NOTHING RETURNING 1;

-- name: finish_workflow
-- Record the outcome of a PENDING workflow that process $6 owns; a workflow of a queue
-- frees a place in it, so its queue's workers are woken. Returns (rows updated,
-- notifications sent).
WITH f AS (
    UPDATE dbos_async.workflow_status
    SET status = $2, output = $3, error = $4, updated_at = $5
    WHERE workflow_uuid = $1 AND (status = 'PENDING' AND owner = $6) IS TRUE -- (by key)
    RETURNING queue_name
), woke AS (
    SELECT pg_notify({channel}, {queue_key:queue_name}) FROM f WHERE queue_name IS NOT NULL
)
SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM woke);

-- name: insert_step
-- Insert a step row unless one exists at its ID, if process $9 owns the workflow (its row
-- held FOR SHARE until commit, so a takeover comes before or after, never between); a
-- row (1) only if it was inserted.
INSERT INTO dbos_async.operation_outputs ({step_columns})
SELECT $1, $2, $3, $4, $5, $6, $7, $8
WHERE EXISTS (
    SELECT 1 FROM dbos_async.workflow_status
    WHERE workflow_uuid = $1 AND owner = $9 FOR SHARE)
ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1;

-- name: record_step_and_finish
-- One step row ($1-$8) and one PENDING workflow to finish ($9-$13), fenced on process
-- $14 as insert_step and finish_workflow are, in one statement: a sequential workflow's
-- last step row commits with its outcome, and write_batch's arrays cost this batch 0.1 ms
-- more. The step is inserted before the finish runs (the main query reads s first), so
-- the FOR SHARE finds the workflow's row as it was. Returns (steps inserted, workflows
-- finished, notifications sent).
WITH s AS (
    INSERT INTO dbos_async.operation_outputs ({step_columns})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8
    WHERE EXISTS (
        SELECT 1 FROM dbos_async.workflow_status
        WHERE workflow_uuid = $1 AND owner = $14 FOR SHARE)
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1
), f AS (
    UPDATE dbos_async.workflow_status
    SET status = $10, output = $11, error = $12, updated_at = $13
    WHERE workflow_uuid = $9 AND (status = 'PENDING' AND owner = $14) IS TRUE -- (by key)
    RETURNING queue_name
), woke AS (
    SELECT pg_notify({channel}, {queue_key:queue_name}) FROM f WHERE queue_name IS NOT NULL
)
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM f), (SELECT count(*) FROM woke);

-- name: not_owned
-- Which of these workflows ($1) process $2 does not own (any more), or no longer exist.
SELECT k.id FROM unnest($1::text[]) AS k(id)
LEFT JOIN dbos_async.workflow_status AS w ON w.workflow_uuid = k.id
WHERE w.workflow_uuid IS NULL OR w.owner IS DISTINCT FROM $2;

-- name: get_step
-- The step row of one workflow at one step ID.
SELECT {step_columns} FROM dbos_async.operation_outputs
WHERE workflow_uuid = $1 AND function_id = $2;

-- name: get_steps
-- The step rows at several (workflow ID, step ID) keys: $1 the IDs, $2 the step IDs.
SELECT {o.step_columns} FROM dbos_async.operation_outputs AS o
JOIN unnest($1::text[], $2::int[]) AS k(workflow_uuid, function_id)
    ON o.workflow_uuid = k.workflow_uuid AND o.function_id = k.function_id;

-- name: journal_session
-- The journal writer's own connection runs only statements that look rows up by key
-- (write_batch, the single writes, and the reads they fall back to). They are planned
-- once per connection (a generic plan) instead of at every batch: planning write_batch
-- cost more than running it (0.3 of a sequential workflow's 0.7 ms last batch). Every
-- access but a key lookup is priced out, so no plan made on a young table's statistics
-- scans the table, or an index of all PENDING rows, once the table has grown.
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off;

-- name: write_batch
-- A checkpoint batch in one statement, every write keyed and skipped if done: workflow
-- rows to insert ($1-$24, one array per column), step rows to insert ($25-$32), PENDING
-- workflows to finish ($33-$37: ID, status, output, error, updated_at; queues they free
-- are woken). Steps and finishes are fenced: only those of workflows process $38 owns are
-- written (a step's workflow row is held FOR SHARE until commit, as in insert_step).
-- Returns one row per write done: (1, workflow) inserted, (2, workflow, step) recorded,
-- (3, workflow) finished, (4) a queue woken.
WITH ins AS (
    INSERT INTO dbos_async.workflow_status ({workflow_columns})
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::int[],
        $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::int[],
        $18::text[], $19::text[], $20::bigint[], $21::bigint[], $22::text[], $23::text[],
        $24::text[])
    ON CONFLICT (workflow_uuid) DO NOTHING RETURNING workflow_uuid
), steps AS (
    INSERT INTO dbos_async.operation_outputs ({step_columns})
    SELECT s.* FROM unnest($25::text[], $26::int[], $27::text[], $28::text[], $29::text[],
        $30::text[], $31::bigint[], $32::bigint[])
        AS s(workflow_uuid, function_id, function_name, output, error, child_workflow_id,
            started_at_epoch_ms, completed_at_epoch_ms)
    WHERE EXISTS (
        SELECT 1 FROM dbos_async.workflow_status AS o
        WHERE o.workflow_uuid = s.workflow_uuid AND o.owner = $38 FOR SHARE)
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING workflow_uuid, function_id
), fin AS (
    UPDATE dbos_async.workflow_status AS w
    SET status = f.status, output = f.output, error = f.error, updated_at = f.updated_at
    FROM unnest($33::text[], $34::text[], $35::text[], $36::text[], $37::bigint[])
        AS f(workflow_uuid, status, output, error, updated_at)
    -- (IS TRUE: the same test, but one that no partial index of PENDING rows matches,
    -- so each workflow is found by its key; see journal_session)
    WHERE w.workflow_uuid = f.workflow_uuid AND (w.status = 'PENDING' AND w.owner = $38) IS TRUE
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

-- name: orphaned_workflows
-- PENDING workflows of application version $1 and of the functions named in $6 (those
-- the caller can run) that no live process runs, oldest first (at most $5): unowned ones
-- (handed back, resumed or forked by a client), those whose owner's lease has expired
-- (or whose owner is unknown), and those process $2 itself owns but does not run ($4:
-- the IDs it runs) and has not touched since $3 (claimed here, the reply lost).
SELECT {w.workflow_columns} FROM dbos_async.workflow_status AS w
WHERE w.status = 'PENDING' AND w.application_version = $1 AND w.name = ANY($6::text[])
    AND (w.owner IS NULL
        OR (w.owner = $2 AND w.updated_at < $3 AND w.workflow_uuid <> ALL($4::text[]))
        OR (w.owner <> $2 AND NOT EXISTS (
            SELECT 1 FROM dbos_async.executors AS e
            WHERE e.process_id = w.owner AND e.lease_expires_at > dbos_async.now_ms())))
ORDER BY w.created_at LIMIT $5;

-- name: take_over
-- Take over workflows still PENDING with the owner and the recovery attempt count their
-- request saw ($1 IDs, $2 owners, $3 counts, $4 limits), if that owner (other than the
-- taker) still has no live lease: each by exactly one process, $5, which counts a
-- recovery attempt (past its limit the workflow is dead-lettered) and becomes their
-- owner and executor ($6) at $7 with token $8. Rows are locked FOR UPDATE, skipping any a
-- write holds, so no write of the old owner commits after this. Returns the rows won.
WITH picked AS (
    SELECT w.workflow_uuid, c.max_attempts FROM dbos_async.workflow_status AS w
    JOIN unnest($1::text[], $2::text[], $3::int[], $4::int[])
        AS c(workflow_uuid, seen_owner, seen, max_attempts)
        ON w.workflow_uuid = c.workflow_uuid
    WHERE w.status = 'PENDING' AND w.recovery_attempts = c.seen
        AND w.owner IS NOT DISTINCT FROM c.seen_owner
        AND (c.seen_owner IS NULL OR c.seen_owner = $5 OR NOT EXISTS (
            SELECT 1 FROM dbos_async.executors AS e
            WHERE e.process_id = c.seen_owner
                AND e.lease_expires_at > dbos_async.now_ms()))
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE dbos_async.workflow_status AS w
SET recovery_attempts = w.recovery_attempts + 1,
    status = CASE WHEN w.recovery_attempts + 1 > p.max_attempts
        THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
    owner = $5, executor_id = $6, updated_at = $7, claim_token = $8
FROM picked AS p
WHERE w.workflow_uuid = p.workflow_uuid
RETURNING {w.workflow_columns};

-- name: taken_over
-- What a takeover whose reply was lost took: the rows ($1: IDs) with its token ($2).
SELECT {workflow_columns} FROM dbos_async.workflow_status
WHERE workflow_uuid = ANY($1::text[]) AND claim_token = $2;
