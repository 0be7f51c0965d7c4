-- The current system schema, applied at once to a fresh database (equal to all migrations).
CREATE TABLE dbos_async.workflow_status (
    workflow_uuid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    inputs TEXT,
    output TEXT,
    error TEXT,
    executor_id TEXT,
    application_version TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    recovery_attempts INTEGER NOT NULL DEFAULT 0,
    queue_name TEXT,
    parent_workflow_id TEXT,
    forked_from TEXT,
    workflow_timeout_ms BIGINT,
    workflow_deadline_epoch_ms BIGINT,
    priority INTEGER NOT NULL DEFAULT 0,
    deduplication_id TEXT,
    queue_partition_key TEXT,
    started_at_epoch_ms BIGINT,
    delay_until_epoch_ms BIGINT,
    enqueue_seq BIGINT,
    claim_token TEXT,
    owner TEXT,
    class_name TEXT,
    config_name TEXT
);

CREATE INDEX workflow_status_pending_idx
    ON dbos_async.workflow_status (executor_id, application_version)
    WHERE status = 'PENDING';

CREATE INDEX workflow_status_owner_idx
    ON dbos_async.workflow_status (owner)
    WHERE status = 'PENDING';

CREATE INDEX workflow_status_created_at_idx ON dbos_async.workflow_status (created_at);

CREATE TABLE dbos_async.operation_outputs (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    output TEXT,
    error TEXT,
    child_workflow_id TEXT,
    started_at_epoch_ms BIGINT,
    completed_at_epoch_ms BIGINT,
    PRIMARY KEY (workflow_uuid, function_id)
);

CREATE TABLE dbos_async.notifications (
    message_uuid TEXT PRIMARY KEY,
    destination_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_epoch_ms BIGINT NOT NULL,
    consumed BOOLEAN NOT NULL DEFAULT FALSE,
    seq BIGSERIAL NOT NULL
);

CREATE INDEX notifications_unconsumed_idx
    ON dbos_async.notifications (destination_uuid, topic, seq)
    WHERE NOT consumed;

CREATE TABLE dbos_async.workflow_events (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE dbos_async.streams (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_async.workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value TEXT,
    closed BOOLEAN NOT NULL DEFAULT FALSE,
    write_key TEXT,
    PRIMARY KEY (workflow_uuid, key, "offset")
);

CREATE UNIQUE INDEX streams_write_key_idx
    ON dbos_async.streams (workflow_uuid, write_key)
    WHERE write_key IS NOT NULL;

CREATE SEQUENCE dbos_async.enqueue_seq;

CREATE INDEX workflow_status_enqueued_idx
    ON dbos_async.workflow_status (queue_name, priority, enqueue_seq)
    WHERE status = 'ENQUEUED';

CREATE INDEX workflow_status_queue_running_idx
    ON dbos_async.workflow_status (queue_name, queue_partition_key)
    WHERE status = 'PENDING' AND queue_name IS NOT NULL;

CREATE INDEX workflow_status_queue_started_idx
    ON dbos_async.workflow_status (queue_name, started_at_epoch_ms)
    WHERE started_at_epoch_ms IS NOT NULL;

CREATE UNIQUE INDEX workflow_status_deduplication_idx
    ON dbos_async.workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- Queue workers cancel ENQUEUED workflows past their deadline now and then.
CREATE INDEX workflow_status_enqueued_deadline_idx
    ON dbos_async.workflow_status (queue_name, workflow_deadline_epoch_ms)
    WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms IS NOT NULL;

CREATE TABLE dbos_async.queues (
    name TEXT PRIMARY KEY,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    limiter_limit INTEGER,
    limiter_period_seconds DOUBLE PRECISION,
    priority_enabled BOOLEAN NOT NULL,
    partition_queue BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    polling_interval_seconds DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    database_backed BOOLEAN NOT NULL DEFAULT FALSE,
    partition_concurrency INTEGER,
    partition_worker_concurrency INTEGER,
    partition_limiter_limit INTEGER,
    partition_limiter_period_seconds DOUBLE PRECISION
);

-- The database's clock in epoch ms: leases are timed by it, so processes on machines whose
-- clocks disagree still agree on which leases have expired.
CREATE FUNCTION dbos_async.now_ms() RETURNS BIGINT
LANGUAGE sql VOLATILE AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Leases: each launched process (one launch) has a row here that it renews several times
-- per lease period; its lease has expired once lease_expires_at (the database's clock,
-- epoch ms) is past. process_tag (boot, PID namespace, start time) tells a reused PID
-- from the process that held the lease.
CREATE TABLE dbos_async.executors (
    process_id TEXT PRIMARY KEY,
    executor_id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_tag TEXT,
    application_version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL
);

-- Fencing: a write of a workflow's (a message, an event, a stream value, a recv) first
-- checks that the writing process still owns the workflow, and holds the row FOR SHARE
-- until it commits: a takeover (which locks the row FOR UPDATE) either comes first, and
-- this write fails, or waits for it, and then sees what it wrote. Raises SQLSTATE DBA01
-- if the workflow has another owner.
CREATE FUNCTION dbos_async.assert_owner(p_workflow TEXT, p_owner TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM dbos_async.workflow_status
    WHERE workflow_uuid = p_workflow AND owner = p_owner FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workflow % is not owned by process %', p_workflow, p_owner
            USING ERRCODE = 'DBA01';
    END IF;
    RETURN TRUE;
END
$$;

-- Application versions: each version a process launched with (registered at its first
-- launch), the latest being the one with the highest version_timestamp, which
-- set_latest_application_version moves to now.
CREATE TABLE dbos_async.application_versions (
    version_id TEXT PRIMARY KEY,
    version_name TEXT NOT NULL UNIQUE,
    version_timestamp BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    application_name TEXT
);

-- Whether p_version is the latest application version (the highest version_timestamp),
-- or no version is registered yet: only processes of the latest version claim queued
-- workflows that name no version.
CREATE FUNCTION dbos_async.is_latest_version(p_version TEXT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((
        SELECT version_name = p_version FROM dbos_async.application_versions
        ORDER BY version_timestamp DESC, version_name DESC LIMIT 1), TRUE)
$$;

-- Claim what a queue (or one partition of it) allows now, in one statement per poll.
-- Rows are picked FOR UPDATE SKIP LOCKED, so workers claiming at once never wait for each
-- other nor take the same row. A global limit counts the claims of every process: a
-- queue-wide one (concurrency, limiter) over the whole queue, a per-partition one
-- (partition concurrency, partition limiter) over the partition claimed from; so those
-- claims take turns under advisory locks, the queue's then the partition's; in a VOLATILE
-- function each query takes a fresh snapshot, so the counts after a lock see every claim
-- committed before it was granted. The claimed rows carry the caller's token, so a caller
-- whose reply was lost finds what it took, and belong to the claiming process (p_owner).
CREATE FUNCTION dbos_async.claim_queued(
    p_queue TEXT,
    p_partition TEXT,
    p_executor TEXT,
    p_version TEXT,
    p_now BIGINT,
    p_max BIGINT,
    p_concurrency BIGINT,
    p_limit BIGINT,
    p_period BIGINT,
    p_partition_concurrency BIGINT,
    p_partition_limit BIGINT,
    p_partition_period BIGINT,
    p_token TEXT,
    p_owner TEXT
) RETURNS SETOF dbos_async.workflow_status
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    room BIGINT := p_max;
BEGIN
    -- Queue-wide limits: the claims of every partition take turns on the queue's lock
    -- (the same key as a queue without partitions), then count the whole queue.
    IF p_concurrency IS NOT NULL OR p_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(1684172659, hashtext(p_queue || chr(31)));
        IF p_concurrency IS NOT NULL THEN
            room := LEAST(room, p_concurrency - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue AND status = 'PENDING'));
        END IF;
        IF p_limit IS NOT NULL THEN
            room := LEAST(room, p_limit - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue AND started_at_epoch_ms > p_now - p_period));
        END IF;
    END IF;
    -- Per-partition limits: then the partition's lock (always in this order), and counts
    -- of the partition alone.
    IF p_partition_concurrency IS NOT NULL OR p_partition_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            1684172659, hashtext(p_queue || chr(31) || COALESCE(p_partition, '')));
        IF p_partition_concurrency IS NOT NULL THEN
            room := LEAST(room, p_partition_concurrency - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue
                    AND queue_partition_key IS NOT DISTINCT FROM p_partition
                    AND status = 'PENDING'));
        END IF;
        IF p_partition_limit IS NOT NULL THEN
            room := LEAST(room, p_partition_limit - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue
                    AND queue_partition_key IS NOT DISTINCT FROM p_partition
                    AND started_at_epoch_ms > p_now - p_partition_period));
        END IF;
    END IF;
    IF room <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT workflow_uuid FROM dbos_async.workflow_status
        WHERE queue_name = p_queue
            AND queue_partition_key IS NOT DISTINCT FROM p_partition
            AND status = 'ENQUEUED'
            AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= p_now)
            AND (application_version = p_version
                OR (application_version IS NULL AND dbos_async.is_latest_version(p_version)))
        ORDER BY priority, enqueue_seq
        LIMIT room
        FOR UPDATE SKIP LOCKED
    )
    UPDATE dbos_async.workflow_status AS w
    SET status = 'PENDING', executor_id = p_executor, application_version = p_version,
        started_at_epoch_ms = p_now, updated_at = p_now, claim_token = p_token,
        owner = p_owner,
        -- the earlier of an inherited deadline and its own timeout from now (LEAST
        -- ignores NULLs)
        workflow_deadline_epoch_ms =
            LEAST(w.workflow_deadline_epoch_ms, p_now + w.workflow_timeout_ms)
    FROM picked
    WHERE w.workflow_uuid = picked.workflow_uuid AND w.status = 'ENQUEUED'
    RETURNING w.*;
END
$$;

-- The claim as processes of the code before 0009 call it (eleven arguments), kept during a
-- rolling upgrade: their queue-wide limits, on a claim from a partition, are that
-- partition's (the older form's meaning), so they keep claiming as they did.
CREATE FUNCTION dbos_async.claim_queued(
    p_queue TEXT,
    p_partition TEXT,
    p_executor TEXT,
    p_version TEXT,
    p_now BIGINT,
    p_max BIGINT,
    p_concurrency BIGINT,
    p_limit BIGINT,
    p_period BIGINT,
    p_token TEXT,
    p_owner TEXT
) RETURNS SETOF dbos_async.workflow_status
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM dbos_async.claim_queued(
        p_queue, p_partition, p_executor, p_version, p_now, p_max,
        CASE WHEN p_partition IS NULL THEN p_concurrency END,
        CASE WHEN p_partition IS NULL THEN p_limit END,
        CASE WHEN p_partition IS NULL THEN p_period END,
        CASE WHEN p_partition IS NOT NULL THEN p_concurrency END,
        CASE WHEN p_partition IS NOT NULL THEN p_limit END,
        CASE WHEN p_partition IS NOT NULL THEN p_period END,
        p_token, p_owner)
$$;


-- Consume the oldest unconsumed message of a topic as a workflow's recv step, by the
-- workflow's owner only (assert_owner). The step row is taken first, so a call repeated
-- after its reply was lost finds the step recorded and consumes nothing more: it gets the
-- recorded row back. An idle poll (no message, no step) writes nothing.
CREATE FUNCTION dbos_async.receive_message(
    p_workflow TEXT,
    p_topic TEXT,
    p_function_id INTEGER,
    p_name TEXT,
    p_now BIGINT,
    p_owner TEXT
) RETURNS SETOF dbos_async.operation_outputs
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    got TEXT;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM dbos_async.notifications
        WHERE destination_uuid = p_workflow AND topic = p_topic AND NOT consumed
    ) AND NOT EXISTS (
        SELECT 1 FROM dbos_async.operation_outputs
        WHERE workflow_uuid = p_workflow AND function_id = p_function_id
    ) THEN
        RETURN;
    END IF;
    PERFORM dbos_async.assert_owner(p_workflow, p_owner);
    INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id, function_name,
        started_at_epoch_ms, completed_at_epoch_ms)
    VALUES (p_workflow, p_function_id, p_name, p_now, p_now)
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT * FROM dbos_async.operation_outputs
            WHERE workflow_uuid = p_workflow AND function_id = p_function_id;
        RETURN;
    END IF;
    UPDATE dbos_async.notifications SET consumed = TRUE
    WHERE message_uuid = (
        SELECT message_uuid FROM dbos_async.notifications
        WHERE destination_uuid = p_workflow AND topic = p_topic AND NOT consumed
        ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING message INTO got;
    IF got IS NULL THEN
        -- Taken by someone else meanwhile: record nothing.
        DELETE FROM dbos_async.operation_outputs
            WHERE workflow_uuid = p_workflow AND function_id = p_function_id;
        RETURN;
    END IF;
    RETURN QUERY UPDATE dbos_async.operation_outputs SET output = got
        WHERE workflow_uuid = p_workflow AND function_id = p_function_id
        RETURNING *;
END
$$;

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
