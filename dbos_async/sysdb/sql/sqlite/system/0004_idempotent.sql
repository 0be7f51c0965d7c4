-- Stream writes carry a key, so a workflow's write repeated by a second run of its step
-- adds nothing (the Postgres schema has the same column; SQLite has no lost replies, so
-- it needs no claim tokens).
ALTER TABLE dbos_streams ADD COLUMN write_key TEXT;

CREATE UNIQUE INDEX dbos_streams_write_key_idx
    ON dbos_streams (workflow_uuid, write_key)
    WHERE write_key IS NOT NULL;

-- Queue workers cancel ENQUEUED workflows past their deadline now and then.
CREATE INDEX dbos_workflow_status_enqueued_deadline_idx
    ON dbos_workflow_status (queue_name, workflow_deadline_epoch_ms)
    WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms IS NOT NULL;
