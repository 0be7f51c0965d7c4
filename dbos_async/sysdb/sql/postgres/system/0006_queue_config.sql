-- Queues declared at run time (DBOS.register_queue): a row so marked is the queue's
-- configuration itself, read by every process's worker of it, rather than a record of
-- what a process declared in code; and how often its workers poll.
ALTER TABLE dbos_async.queues ADD COLUMN polling_interval_seconds DOUBLE PRECISION NOT NULL DEFAULT 1.0;
ALTER TABLE dbos_async.queues ADD COLUMN database_backed BOOLEAN NOT NULL DEFAULT FALSE;
