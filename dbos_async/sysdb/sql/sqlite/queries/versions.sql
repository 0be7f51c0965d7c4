-- Application versions (table dbos_application_versions): registered at a process's
-- first launch with a version; the latest is the one with the highest version_timestamp.

-- name: register_version
-- Record a version (ID, name, timestamp and creation time, application) unless a
-- version of that name is recorded.
INSERT INTO dbos_application_versions
    (version_id, version_name, version_timestamp, created_at, application_name)
VALUES (:id, :name, :now, :now, :app)
ON CONFLICT (version_name) DO NOTHING;

-- name: list_versions
-- Every version, the latest first.
SELECT version_id, version_name, version_timestamp, created_at, application_name
FROM dbos_application_versions
ORDER BY version_timestamp DESC, version_name DESC;

-- name: set_version_timestamp
-- Set a version's (:name) timestamp to :ts; a row if it exists.
UPDATE dbos_application_versions SET version_timestamp = :ts
WHERE version_name = :name
RETURNING 1;
