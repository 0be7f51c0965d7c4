-- A partitioned queue's per-partition limits, stored apart from its queue-wide ones so
-- both apply at once (as DBOS Transact's): partition_concurrency bounds each partition's
-- running workflows across all processes, partition_worker_concurrency those of one
-- process, and the partition limiter each partition's starts per period, while
-- concurrency, worker_concurrency and the limiter bound the whole queue. A row with
-- partition_queue set and none of these is the older form, whose concurrency,
-- worker_concurrency and limiter apply per partition: rows written before keep their
-- meaning.
ALTER TABLE dbos_queues ADD COLUMN partition_concurrency INTEGER;
ALTER TABLE dbos_queues ADD COLUMN partition_worker_concurrency INTEGER;
ALTER TABLE dbos_queues ADD COLUMN partition_limiter_limit INTEGER;
ALTER TABLE dbos_queues ADD COLUMN partition_limiter_period_seconds REAL;
