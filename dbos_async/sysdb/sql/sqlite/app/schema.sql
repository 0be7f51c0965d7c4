-- The current application-database schema, applied at once to a fresh database.
CREATE TABLE dbos_transaction_outputs (
    workflow_uuid TEXT NOT NULL,
    function_id INTEGER NOT NULL,
    output TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workflow_uuid, function_id)
);
