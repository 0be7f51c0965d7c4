-- A partitioned queue's per-partition limits, stored apart from its queue-wide ones so
-- both apply at once (as DBOS Transact's): partition_concurrency bounds each partition's
-- running workflows across all processes, partition_worker_concurrency those of one
-- process, and the partition limiter each partition's starts per period, while
-- concurrency, worker_concurrency and the limiter bound the whole queue. A row with
-- partition_queue set and none of these is the older form, whose concurrency,
-- worker_concurrency and limiter apply per partition: rows written before keep their
-- meaning.
ALTER TABLE dbos_async.queues ADD COLUMN partition_concurrency INTEGER;
ALTER TABLE dbos_async.queues ADD COLUMN partition_worker_concurrency INTEGER;
ALTER TABLE dbos_async.queues ADD COLUMN partition_limiter_limit INTEGER;
ALTER TABLE dbos_async.queues ADD COLUMN partition_limiter_period_seconds DOUBLE PRECISION;

-- The claim of 0007, which now counts the queue-wide limits over the whole queue and the
-- per-partition ones over the partition claimed from (its arguments change, so it is
-- replaced).
DROP FUNCTION dbos_async.claim_queued(TEXT, TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT,
    BIGINT, BIGINT, TEXT, TEXT);
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
