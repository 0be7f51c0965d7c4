-- Schema bookkeeping around the numbered migrations (sql/postgres/{system,app}/).

-- name: lock_migrations
-- Serialize migrations across processes until the transaction ends ($1: the lock key).
SELECT pg_advisory_xact_lock($1);

-- name: create_schema
-- The schema every table lives in.
CREATE SCHEMA IF NOT EXISTS dbos_async;

-- name: create_migrations_table
-- Which migrations of which component were applied.
CREATE TABLE IF NOT EXISTS dbos_async.migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (component, version)
);

-- name: applied_migrations
-- The versions applied to component $1.
SELECT version FROM dbos_async.migrations WHERE component = $1;

-- name: record_migration
-- Note version $2 of component $1 as applied at $3.
INSERT INTO dbos_async.migrations (component, version, applied_at) VALUES ($1, $2, $3);
