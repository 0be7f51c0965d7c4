-- Workflow communication: messages (send/recv), events, and streams.
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
    PRIMARY KEY (workflow_uuid, key, "offset")
);
