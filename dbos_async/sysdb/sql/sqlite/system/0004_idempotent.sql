-- Stream writes carry a key, so a workflow's write repeated by a second run of its step
-- adds nothing (the Postgres schema has the same column; SQLite has no lost replies, so
-- it needs no claim tokens).
ALTER TABLE dbos_streams ADD COLUMN write_key TEXT;

CREATE UNIQUE INDEX dbos_streams_write_key_idx
    ON dbos_streams (workflow_uuid, write_key)
    WHERE write_key IS NOT NULL;
