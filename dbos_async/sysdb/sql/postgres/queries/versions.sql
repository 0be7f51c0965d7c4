-- Application versions (table application_versions): registered at a process's first
-- launch with a version; the latest is the one with the highest version_timestamp.

-- name: register_version
-- Record version $2 (ID $1, timestamp and creation time $3, application $4) unless a
-- version of that name is recorded.
INSERT INTO dbos_async.application_versions
    (version_id, version_name, version_timestamp, created_at, application_name)
VALUES ($1, $2, $3, $3, $4)
ON CONFLICT (version_name) DO NOTHING;

-- name: list_versions
-- Every version, the latest first.
SELECT version_id, version_name, version_timestamp, created_at, application_name
FROM dbos_async.application_versions
ORDER BY version_timestamp DESC, version_name DESC;

-- name: set_version_timestamp
-- Set version $1's timestamp to $2; a row if it exists.
UPDATE dbos_async.application_versions SET version_timestamp = $2
WHERE version_name = $1
RETURNING 1;
