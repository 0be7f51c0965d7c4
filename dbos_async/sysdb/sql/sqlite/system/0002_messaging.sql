-- Workflow communication: messages (send/recv), events, and streams.
CREATE TABLE dbos_notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_uuid TEXT NOT NULL UNIQUE,
    destination_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_epoch_ms INTEGER NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX dbos_notifications_unconsumed_idx
    ON dbos_notifications (destination_uuid, topic, seq)
    WHERE consumed = 0;

CREATE TABLE dbos_workflow_events (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE dbos_streams (
    workflow_uuid TEXT NOT NULL
        REFERENCES dbos_workflow_status (workflow_uuid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    value TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_uuid, key, "offset")
);
