-- Schema bookkeeping around the numbered migrations (sql/sqlite/{system,app}/).

-- name: create_migrations_table
-- Which migrations of which component were applied.
CREATE TABLE IF NOT EXISTS dbos_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at INTEGER NOT NULL,
    PRIMARY KEY (component, version)
);

-- name: applied_migrations
-- The versions applied to a component.
SELECT version FROM dbos_migrations WHERE component = ?;

-- name: record_migration
-- Note a version of a component as applied (component, version, applied at).
INSERT INTO dbos_migrations (component, version, applied_at) VALUES (?, ?, ?);
