-- Application versions, and queue claims that leave workflows naming no version to the
-- processes of the latest version (as DBOS Transact's).

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

-- The claim of 0005, whose rows naming no version only a process of the latest
-- application version takes now.
CREATE OR REPLACE FUNCTION dbos_async.claim_queued(
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
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    room BIGINT := p_max;
BEGIN
    IF p_concurrency IS NOT NULL OR p_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(
            1684172659, hashtext(p_queue || chr(31) || COALESCE(p_partition, '')));
        IF p_concurrency IS NOT NULL THEN
            room := LEAST(room, p_concurrency - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue
                    AND queue_partition_key IS NOT DISTINCT FROM p_partition
                    AND status = 'PENDING'));
        END IF;
        IF p_limit IS NOT NULL THEN
            room := LEAST(room, p_limit - (
                SELECT count(*) FROM dbos_async.workflow_status
                WHERE queue_name = p_queue
                    AND queue_partition_key IS NOT DISTINCT FROM p_partition
                    AND started_at_epoch_ms > p_now - p_period));
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
