-- The current application-database schema, applied at once to a fresh database.
CREATE TABLE dbos_async.transaction_outputs (
    workflow_uuid TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    output TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow_uuid, function_id)
);
