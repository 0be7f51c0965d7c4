-- Queues declared at run time (DBOS.register_queue): a row so marked is the queue's
-- configuration itself, read by every process's worker of it, rather than a record of
-- what a process declared in code; and how often its workers poll.
ALTER TABLE dbos_queues ADD COLUMN polling_interval_seconds REAL NOT NULL DEFAULT 1.0;
ALTER TABLE dbos_queues ADD COLUMN database_backed INTEGER NOT NULL DEFAULT 0;
