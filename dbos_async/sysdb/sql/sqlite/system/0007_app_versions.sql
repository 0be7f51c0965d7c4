-- Application versions (the queue claim that uses them is in queries/queues.sql).
-- Application versions: each version a process launched with (registered at its first
-- launch), the latest being the one with the highest version_timestamp, which
-- set_latest_application_version moves to now.
CREATE TABLE dbos_application_versions (
    version_id TEXT PRIMARY KEY,
    version_name TEXT NOT NULL UNIQUE,
    version_timestamp INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    application_name TEXT
);
