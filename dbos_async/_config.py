"""Configuration: the ``DBOSConfig`` keys, their defaults and their validation."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import urlsplit

from ._errors import DBOSConfigError
from ._serialization import Serializer, make_serializer
from ._urls import SQLITE_PREFIX, is_sqlite_url, redact_url

__all__ = ["PATCHING_VERSION", "DBOSConfig", "Settings", "resolve_config", "validate_url"]

log = logging.getLogger("dbos_async")


class DBOSConfig(TypedDict, total=False):
    """What ``DBOS(config)`` accepts; every key is optional."""

    name: str
    """The application name (default ``"dbos_async"``); it names the default SQLite file."""
    database_url: str
    """``postgresql://user@host:5432/db`` or ``sqlite:///path.sqlite``
    (``sqlite:///:memory:`` allowed). Default: env ``DBOS_DATABASE_URL``, else
    ``sqlite:///{name}.sqlite`` in the working directory (or ``system_database_url``
    when only that is given). ``@DBOS.transaction`` functions run on this database."""
    system_database_url: str
    """Where the runtime's own tables live; default ``database_url``."""
    executor_id: str
    """This process's executor ID; default env ``DBOS__VMID``, else ``"local"``."""
    application_version: str
    """Default env ``DBOS__APPVERSION``, else ``"PATCHING_ENABLED"`` with
    ``enable_patching``, else a hash of the registered workflow functions' source. Only
    processes of a workflow's version recover it."""
    enable_patching: bool
    """Allow ``DBOS.patch``/``DBOS.deprecate_patch`` (default False). Unless an
    application version is given, the version is then ``"PATCHING_ENABLED"`` for every
    build of the code, so a patched build recovers the workflows of an older one."""
    serializer: Any
    """``"json"`` (default), ``"pickle"``, or an object with
    ``serialize(obj) -> str`` and ``deserialize(str) -> obj``."""
    pool_size: int
    """Connections in the Postgres pool (default 10)."""
    connect_timeout: float
    """Seconds to keep trying an unreachable Postgres at launch before
    raising ``DBOSConnectionError`` (default 10)."""
    executor_lease_seconds: float
    """How long a process owns its workflows without renewing its
    lease (default 10, at least 0.5); it renews it several times per period."""
    application_database_url: str
    """DBOS Transact's name for ``database_url`` (give one of the two, or both equal)."""
    sys_db_pool_size: int
    """DBOS Transact's name for ``pool_size``."""
    log_level: str
    """The level of the ``dbos_async`` logger (``"DEBUG"``, ``"INFO"``, ``"WARNING"``...),
    as DBOS Transact's key sets its logger's; unset, the logger is left as it is."""


_KEYS = set(DBOSConfig.__annotations__)

#: DBOS Transact's configuration keys that mean nothing here: a DBOS config dict is
#: accepted, each of these with one warning in the log saying it has no effect and why.
_DBOS_ONLY_KEYS: dict[str, str] = {
    **dict.fromkeys(
        (
            "otlp_traces_endpoints",
            "otlp_logs_endpoints",
            "otlp_log_level",
            "otlp_attributes",
            "enable_otlp",
            "otel_attribute_format",
        ),
        "set an OpenTelemetry tracer provider with the exporter you want instead (docs/tracing.md)",
    ),
    "console_log_level": "configure logging handlers yourself (log_level sets the level)",
    **dict.fromkeys(
        ("admin_port", "run_admin_server"), "there is no admin server; use the dbos-async CLI"
    ),
    **dict.fromkeys(
        ("conductor_key", "conductor_url", "conductor_executor_metadata"),
        "there is no DBOS Conductor connection",
    ),
    **dict.fromkeys(
        ("db_engine_kwargs", "system_database_engine"),
        "the runtime uses asyncpg and aiosqlite directly, not SQLAlchemy engines",
    ),
    "max_executor_threads": "plain def steps run in asyncio's default thread pool",
    **dict.fromkeys(
        (
            "sys_db_polling_concurrency",
            "notification_listener_polling_interval_sec",
            "notification_coalesce_sec",
            "scheduler_polling_interval_sec",
            "kafka_queue_polling_interval_sec",
            "use_listen_notify",
        ),
        "waits are woken by notifications (Postgres LISTEN) with polling built in",
    ),
    "dbos_system_schema": "the runtime's tables live in the dbos_async schema",
    "run_migrations": "launch always creates or migrates the schema",
}

#: The application version of every build when ``enable_patching`` is on and no version
#: is given (DBOS Transact's value): code changes are then made with ``DBOS.patch``.
PATCHING_VERSION = "PATCHING_ENABLED"


@dataclass(frozen=True)
class Settings:
    """A configuration with every default filled in and every value checked."""

    name: str
    database_url: str
    system_database_url: str
    executor_id: str
    application_version: str | None
    serializer: Serializer
    pool_size: int
    connect_timeout: float
    #: How long a process's lease lasts unrenewed; it renews it several times per period.
    executor_lease_seconds: float = 10.0
    #: Whether ``DBOS.patch`` and ``DBOS.deprecate_patch`` may be called.
    enable_patching: bool = False


def validate_url(url: object, key: str) -> str:
    """Check a database URL, naming the config key and the URL when it is malformed."""
    if not isinstance(url, str) or not url:
        raise DBOSConfigError(f"config {key!r} must be a non-empty string, got {url!r}")
    shown = redact_url(url)
    if is_sqlite_url(url):
        if not url.startswith(SQLITE_PREFIX) or len(url) == len(SQLITE_PREFIX):
            raise DBOSConfigError(
                f"config {key!r}: malformed SQLite URL {shown!r}; "
                "expected sqlite:///relative/path.sqlite, sqlite:////absolute/path.sqlite "
                "or sqlite:///:memory:"
            )
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DBOSConfigError(f"config {key!r}: malformed database URL {shown!r}: {exc}") from None
    scheme = parts.scheme
    if scheme in ("postgresql+asyncpg", "postgres+asyncpg"):
        url = "postgresql" + url[len(scheme) :]
    elif scheme not in ("postgresql", "postgres"):
        raise DBOSConfigError(
            f"config {key!r}: unsupported database URL {shown!r}; expected postgresql://... "
            "or sqlite:///..."
        )
    if not parts.hostname:
        raise DBOSConfigError(f"config {key!r}: database URL {shown!r} names no host")
    database = parts.path.lstrip("/")
    if not database or "/" in database:
        raise DBOSConfigError(
            f"config {key!r}: database URL {shown!r} must name one database, "
            "as postgresql://user@host:5432/dbname"
        )
    if port is not None and port <= 0:
        raise DBOSConfigError(f"config {key!r}: database URL {shown!r} has an invalid port")
    return url


def resolve_config(config: DBOSConfig | dict[str, Any] | None) -> Settings:
    """Fill in defaults (environment, then built-in) and validate every key."""
    raw: dict[str, Any] = dict(config or {})
    unknown = sorted(set(raw) - _KEYS - set(_DBOS_ONLY_KEYS))
    if unknown:
        raise DBOSConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(_KEYS))}"
        )
    for key in sorted(set(raw) & set(_DBOS_ONLY_KEYS)):
        if raw[key] is not None:
            log.warning(
                "config key %r (DBOS Transact's) has no effect in dbos_async: %s",
                key,
                _DBOS_ONLY_KEYS[key],
            )
    _dbos_aliases(raw)
    name = raw.get("name", "dbos_async")
    if not isinstance(name, str) or not name:
        raise DBOSConfigError(f"config 'name' must be a non-empty string, got {name!r}")
    if raw.get("database_url") is not None:
        database_url = validate_url(raw["database_url"], "database_url")
    elif os.environ.get("DBOS_DATABASE_URL"):
        database_url = validate_url(os.environ["DBOS_DATABASE_URL"], "DBOS_DATABASE_URL")
    elif raw.get("system_database_url") is not None:
        # (Only the system database named, as DBOS Transact configs often do: the
        # transactions run there too.)
        database_url = validate_url(raw["system_database_url"], "system_database_url")
    else:
        database_url = f"{SQLITE_PREFIX}{name}.sqlite"
    system_url = (
        validate_url(raw["system_database_url"], "system_database_url")
        if raw.get("system_database_url") is not None
        else database_url
    )
    executor_id = raw.get("executor_id") or os.environ.get("DBOS__VMID") or "local"
    if not isinstance(executor_id, str):
        raise DBOSConfigError(f"config 'executor_id' must be a string, got {executor_id!r}")
    patching = raw.get("enable_patching", False)
    if patching is None:
        patching = False
    if not isinstance(patching, bool):
        raise DBOSConfigError(f"config 'enable_patching' must be True or False, got {patching!r}")
    version = raw.get("application_version") or os.environ.get("DBOS__APPVERSION") or None
    if version is not None and not isinstance(version, str):
        raise DBOSConfigError(f"config 'application_version' must be a string, got {version!r}")
    if version is None and patching:
        version = PATCHING_VERSION
    pool_size = raw.get("pool_size", 10)
    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or pool_size < 1:
        raise DBOSConfigError(f"config 'pool_size' must be a positive integer, got {pool_size!r}")
    timeout = _positive_seconds(raw.get("connect_timeout", 10.0), "connect_timeout")
    lease = _positive_seconds(raw.get("executor_lease_seconds", 10.0), "executor_lease_seconds")
    if lease < 0.5:
        raise DBOSConfigError(
            f"config 'executor_lease_seconds' must be at least 0.5 (a process renews its "
            f"lease several times per period), got {lease!r}"
        )
    return Settings(
        name=name,
        database_url=database_url,
        system_database_url=system_url,
        executor_id=executor_id,
        application_version=version,
        serializer=make_serializer(raw.get("serializer")),
        pool_size=pool_size,
        connect_timeout=timeout,
        executor_lease_seconds=lease,
        enable_patching=patching,
    )


def _positive_seconds(value: object, key: str) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise DBOSConfigError(f"config {key!r} must be a positive number, got {value!r}")
    return float(value)


def _dbos_aliases(raw: dict[str, Any]) -> None:
    """DBOS Transact's keys that mean what one of ours does, moved to ours in ``raw``;
    ``log_level`` applied. Giving both names with different values is an error."""
    for theirs, ours in (
        ("application_database_url", "database_url"),
        ("sys_db_pool_size", "pool_size"),
    ):
        if raw.get(theirs) is None:
            raw.pop(theirs, None)
            continue
        value = raw.pop(theirs)
        if raw.get(ours) is not None and raw[ours] != value:
            raise DBOSConfigError(
                f"config keys {ours!r} and {theirs!r} (its DBOS Transact name) differ: "
                f"give one of them"
            )
        raw[ours] = value
    level = raw.pop("log_level", None)
    if level is not None:
        if not isinstance(level, str) or not isinstance(logging.getLevelName(level.upper()), int):
            raise DBOSConfigError(
                f"config 'log_level' must be a logging level name such as 'INFO' or "
                f"'DEBUG', got {level!r}"
            )
        logging.getLogger("dbos_async").setLevel(level.upper())
