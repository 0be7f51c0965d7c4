"""Configuration and lifecycle: ``DBOS(config)``, ``resolve_config``, launch failures, and
the checks the decorators make when they are applied."""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSConfigError,
    DBOSConnectionError,
    DBOSException,
    Queue,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._config import resolve_config
from dbos_async._registry import registry
from dbos_async._serialization import JSONSerializer

from .conftest import stable_id

PG_SERVER = os.environ.get("DBOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ENV_VARS = ("DBOS_DATABASE_URL", "DBOS__VMID", "DBOS__APPVERSION")


@DBOS.workflow()
async def cfg_echo(value: int) -> int:
    return value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(autouse=True)
async def no_dbos_instance() -> AsyncIterator[None]:
    """Every test starts and ends without a DBOS instance."""
    await DBOS.destroy()
    try:
        yield
    finally:
        await DBOS.destroy()


def sqlite_url(tmp_path: Path, name: str = "cfg.sqlite") -> str:
    return f"sqlite:///{tmp_path / name}"


async def run_echo(value: int) -> str:
    """Run ``cfg_echo`` under a fresh ID and return that ID."""
    workflow_id = f"cfg-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id):
        assert await cfg_echo(value) == value
    return workflow_id


# --------------------------------------------------------------------------------------
# Database URLs

MALFORMED_URLS = [
    "postgresql://",
    "postgres://",
    "mysql://x/y",
    "sqlite://relative",
    "sqlite:relative.sqlite",
    "sqlite:///",
    "not a url",
    "postgresql://host:notaport/db",
    "postgresql://host:99999/db",
    "postgresql://host:0/db",
    "postgresql://host",
    "postgresql://host/",
    "postgresql://host/db/extra",
    "postgresql:///db",
    "http://example.com/db",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_database_url__malformed_raises_config_error_showing_the_url(url: str) -> None:
    with pytest.raises(DBOSConfigError) as info:
        DBOS({"database_url": url})
    assert url in str(info.value)
    assert "database_url" in str(info.value)


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_system_database_url__malformed_raises_config_error_naming_the_key(url: str) -> None:
    with pytest.raises(DBOSConfigError) as info:
        DBOS({"database_url": "sqlite:///:memory:", "system_database_url": url})
    assert url in str(info.value)
    assert "system_database_url" in str(info.value)


@pytest.mark.parametrize("url", ["", 5, ["postgresql://h/db"], b"sqlite:///x.sqlite"], ids=repr)
def test_database_url__not_a_non_empty_string_raises_config_error(url: Any) -> None:
    with pytest.raises(DBOSConfigError, match="database_url"):
        DBOS({"database_url": url})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:secret@h",
        "postgresql://u:secret@h/",
        "postgresql://u:secret@h/db/extra",
        "postgresql://u:secret@h:notaport/db",
        "postgresql://u:secret@h:0/db",
        "postgresql://u:secret@h:70000/db",
        "postgresql://u:secret@/db",
        "mysql://u:secret@h/db",
        "postgresql://u:secret@h:bad%40port/db",
    ],
)
def test_database_url__error_redacts_the_password(url: str) -> None:
    with pytest.raises(DBOSConfigError) as info:
        DBOS({"database_url": url})
    err: BaseException | None = info.value
    assert "secret" not in str(info.value)
    # The rest of the URL is still shown, so the user can find the mistake.
    assert url.split("@", 1)[1] in str(info.value)
    while err is not None:  # nor anywhere in the chain a traceback would print
        assert "secret" not in str(err)
        assert "secret" not in repr(err.args)
        err = err.__cause__ or err.__context__


def test_database_url__env_error_redacts_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_DATABASE_URL", "postgresql://u:secret@h:nope/db")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert "secret" not in str(info.value)
    assert "DBOS_DATABASE_URL" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/db",
        "postgresql://u:pw@h:5433/db",
        "postgres://h/db",
        "sqlite:///relative.sqlite",
        "sqlite:////abs/path.sqlite",
        "sqlite:///:memory:",
    ],
)
def test_resolve_config__valid_urls_are_kept(url: str) -> None:
    settings = resolve_config({"database_url": url})
    assert settings.database_url.split("://", 1)[1] == url.split("://", 1)[1]
    assert settings.system_database_url == settings.database_url


def test_resolve_config__system_database_url_is_separate_when_given() -> None:
    settings = resolve_config(
        {"database_url": "sqlite:///app.sqlite", "system_database_url": "sqlite:///sys.sqlite"}
    )
    assert settings.database_url == "sqlite:///app.sqlite"
    assert settings.system_database_url == "sqlite:///sys.sqlite"


def test_dbos__failed_config_leaves_no_instance(tmp_path: Path) -> None:
    with pytest.raises(DBOSConfigError):
        DBOS({"database_url": "mysql://x/y"})
    DBOS({"database_url": sqlite_url(tmp_path)})  # must not say "already exists"


# --------------------------------------------------------------------------------------
# Config keys and values


def test_config__unknown_key_raises_config_error_naming_it() -> None:
    with pytest.raises(DBOSConfigError, match="databse_url"):
        DBOS({"databse_url": "sqlite:///:memory:"})


def test_config__every_unknown_key_is_named() -> None:
    with pytest.raises(DBOSConfigError) as info:
        resolve_config({"name": "ok", "poolsize": 3, "app_version": "1"})
    assert "poolsize" in str(info.value)
    assert "app_version" in str(info.value)


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True], ids=repr)
def test_config__bad_pool_size_raises_config_error(value: Any) -> None:
    with pytest.raises(DBOSConfigError, match="pool_size"):
        DBOS({"database_url": "sqlite:///:memory:", "pool_size": value})


@pytest.mark.parametrize("value", [0, -1, -0.5, "5", True, float("nan")], ids=repr)
def test_config__bad_connect_timeout_raises_config_error(value: Any) -> None:
    with pytest.raises(DBOSConfigError, match="connect_timeout"):
        DBOS({"database_url": "sqlite:///:memory:", "connect_timeout": value})


@pytest.mark.parametrize("value", ["yaml", "", 42, object(), str, ["json"]], ids=stable_id)
def test_config__bad_serializer_raises_config_error(value: Any) -> None:
    with pytest.raises(DBOSConfigError, match="serializer"):
        DBOS({"database_url": "sqlite:///:memory:", "serializer": value})


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", ""), ("name", 3), ("executor_id", 5), ("application_version", 1.0)],
    ids=repr,
)
def test_config__bad_string_values_raise_config_error(key: str, value: Any) -> None:
    with pytest.raises(DBOSConfigError, match=key):
        DBOS({"database_url": "sqlite:///:memory:", key: value})


def test_resolve_config__defaults() -> None:
    settings = resolve_config(None)
    assert settings.name == "dbos_async"
    assert settings.database_url == "sqlite:///dbos_async.sqlite"
    assert settings.system_database_url == settings.database_url
    assert settings.executor_id == "local"
    assert settings.application_version is None
    # The documented defaults (README "Configuration", DBOSConfig in _config.py).
    assert settings.pool_size == 10
    assert settings.connect_timeout == 10.0
    assert isinstance(settings.serializer, JSONSerializer)


def test_queue__documented_defaults() -> None:
    """A queue declared with a name only: no limits, no priorities, no partitions, and
    a poll every second (README: ``polling_interval_sec`` default 1 s)."""
    queue = Queue("cfg_defaults_queue")
    try:
        assert queue.polling_interval_sec == 1.0
        assert queue.concurrency is None
        assert queue.worker_concurrency is None
        assert queue.limit is None and queue.period is None
        assert queue.priority_enabled is False
        assert queue.partition_queue is False
    finally:
        registry.queues.pop("cfg_defaults_queue", None)


def test_resolve_config__valid_numbers_are_kept() -> None:
    settings = resolve_config({"pool_size": 3, "connect_timeout": 2})
    assert settings.pool_size == 3
    assert settings.connect_timeout == 2.0


# --------------------------------------------------------------------------------------
# Environment variables and defaults


def test_database_url__env_var_is_used_when_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path, "from_env.sqlite")
    monkeypatch.setenv("DBOS_DATABASE_URL", url)
    assert resolve_config({}).database_url == url
    assert resolve_config({"name": "x"}).system_database_url == url


async def test_database_url__env_var_database_is_the_one_launched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBOS_DATABASE_URL", sqlite_url(tmp_path, "from_env.sqlite"))
    monkeypatch.chdir(tmp_path)
    DBOS()
    await DBOS.launch()
    await run_echo(1)
    await DBOS.destroy()
    assert (tmp_path / "from_env.sqlite").is_file()
    assert not (tmp_path / "dbos_async.sqlite").exists()


def test_database_url__config_wins_over_env_var(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBOS_DATABASE_URL", sqlite_url(tmp_path, "from_env.sqlite"))
    url = sqlite_url(tmp_path, "from_config.sqlite")
    assert resolve_config({"database_url": url}).database_url == url


def test_database_url__malformed_env_var_raises_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBOS_DATABASE_URL", "mysql://x/y")
    with pytest.raises(DBOSConfigError) as info:
        DBOS()
    assert "DBOS_DATABASE_URL" in str(info.value)
    assert "mysql://x/y" in str(info.value)


@pytest.mark.parametrize(
    ("config", "filename"),
    [({}, "dbos_async.sqlite"), ({"name": "cfg_app"}, "cfg_app.sqlite")],
    ids=["default-name", "named"],
)
async def test_database_url__default_is_sqlite_named_after_the_app_in_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: dict[str, Any], filename: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / filename).exists()
    DBOS(config)
    try:
        await DBOS.launch()
        workflow_id = await run_echo(3)
        status = await DBOS.get_workflow_status(workflow_id)
        assert status is not None
        assert status.status == WorkflowStatusString.SUCCESS
    finally:
        await DBOS.destroy()
    assert (tmp_path / filename).is_file()
    assert (tmp_path / filename).stat().st_size > 0


async def test_system_database_url__separate_sqlite_files_are_both_created(
    tmp_path: Path,
) -> None:
    DBOS(
        {
            "database_url": sqlite_url(tmp_path, "app.sqlite"),
            "system_database_url": sqlite_url(tmp_path, "sys.sqlite"),
        }
    )
    await DBOS.launch()
    workflow_id = await run_echo(4)
    await DBOS.destroy()
    assert (tmp_path / "app.sqlite").is_file()
    assert (tmp_path / "sys.sqlite").is_file()
    # The workflow is recorded in the system database: a runtime on it finds it.
    DBOS(
        {
            "database_url": sqlite_url(tmp_path, "app.sqlite"),
            "system_database_url": sqlite_url(tmp_path, "sys.sqlite"),
        }
    )
    await DBOS.launch()
    assert await DBOS.get_workflow_status(workflow_id) is not None
    await DBOS.destroy()
    DBOS({"database_url": sqlite_url(tmp_path, "sys_elsewhere.sqlite")})
    await DBOS.launch()
    assert await DBOS.get_workflow_status(workflow_id) is None


async def test_database_url__sqlite_memory_works() -> None:
    DBOS({"database_url": "sqlite:///:memory:"})
    await DBOS.launch()
    workflow_id = await run_echo(5)
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert status.output == 5


def test_executor_id__defaults_to_local() -> None:
    assert resolve_config({}).executor_id == "local"


def test_executor_id__env_var_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__VMID", "vm-from-env")
    assert resolve_config({}).executor_id == "vm-from-env"
    assert resolve_config({"executor_id": "explicit"}).executor_id == "explicit"


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [(None, {}, "local"), ("vm-7", {}, "vm-7"), ("vm-7", {"executor_id": "exec-x"}, "exec-x")],
    ids=["default", "env", "config-wins"],
)
async def test_executor_id__is_recorded_on_workflows(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: str | None,
    config: dict[str, Any],
    expected: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("DBOS__VMID", env)
    DBOS({"database_url": sqlite_url(tmp_path), **config})
    await DBOS.launch()
    status = await DBOS.get_workflow_status(await run_echo(6))
    assert status is not None
    assert status.executor_id == expected


def test_application_version__env_var_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPVERSION", "v-from-env")
    assert resolve_config({}).application_version == "v-from-env"
    assert resolve_config({"application_version": "v-cfg"}).application_version == "v-cfg"


async def test_application_version__env_var_is_recorded_on_workflows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBOS__APPVERSION", "v-from-env")
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    status = await DBOS.get_workflow_status(await run_echo(7))
    assert status is not None
    assert status.app_version == "v-from-env"


async def test_application_version__default_is_a_stable_source_hash(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    first = await DBOS.get_workflow_status(await run_echo(8))
    await DBOS.destroy()
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    second = await DBOS.get_workflow_status(await run_echo(9))
    assert first is not None
    assert second is not None
    assert first.app_version
    assert first.app_version not in ("local", "test")
    assert first.app_version == second.app_version


# --------------------------------------------------------------------------------------
# Launch failures and database creation


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts TCP connections (the kernel completes the handshake)
    but never answers: a server that hangs, without sending traffic off this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/x",
        "postgresql://postgres:hunter2@127.0.0.1:1/x",
        "postgresql://postgres@127.0.0.1:{silent_port}/x",
    ],
    ids=["refused", "refused-with-password", "silent"],
)
async def test_launch__unreachable_postgres_raises_connection_error_quickly(
    url: str, silent_port: int
) -> None:
    DBOS({"database_url": url.format(silent_port=silent_port), "connect_timeout": 1})
    started = time.monotonic()
    with pytest.raises(DBOSConnectionError) as info:
        await DBOS.launch()
    # connect_timeout=1 is honoured: a bound far below the driver's own 60 s and the
    # default connect_timeout of 10 s, with room for a loaded machine.
    assert time.monotonic() - started < 8
    assert isinstance(info.value, DBOSException)
    assert "hunter2" not in str(info.value)


async def test_launch__after_connection_error_nothing_runs_and_a_new_dbos_can_start(
    tmp_path: Path,
) -> None:
    DBOS({"database_url": "postgresql://postgres@127.0.0.1:1/x", "connect_timeout": 1})
    with pytest.raises(DBOSConnectionError):
        await DBOS.launch()
    with pytest.raises(DBOSException):
        await cfg_echo(1)
    await DBOS.destroy()
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    await run_echo(10)


async def _admin_fetchval(sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["cfg_new_{}", "Cfg-New-{}"], ids=["plain", "needs-quoting"])
async def test_launch__missing_postgres_database_is_created(
    postgres_template: str, name: str
) -> None:
    database = name.format(uuid.uuid4().hex[:10])
    exists = "SELECT count(*) FROM pg_database WHERE datname = $1"
    assert await _admin_fetchval(exists, database) == 0
    try:
        DBOS({"database_url": f"{PG_SERVER}/{database}", "application_version": "test"})
        await DBOS.launch()
        workflow_id = await run_echo(11)
        status = await DBOS.get_workflow_status(workflow_id)
        assert status is not None
        assert status.status == WorkflowStatusString.SUCCESS
        await DBOS.destroy()
        assert await _admin_fetchval(exists, database) == 1
        # The second launch finds the database and its schema in place.
        DBOS({"database_url": f"{PG_SERVER}/{database}", "application_version": "test"})
        await DBOS.launch()
        assert await DBOS.get_workflow_status(workflow_id) is not None
    finally:
        await DBOS.destroy()
        quoted = '"' + database.replace('"', '""') + '"'
        await _admin_fetchval(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


async def test_launch__unreachable_app_database_leaves_system_database_reusable(
    tmp_path: Path,
) -> None:
    config = {
        "database_url": "postgresql://postgres@127.0.0.1:1/x",
        "system_database_url": sqlite_url(tmp_path, "sys.sqlite"),
        "connect_timeout": 1,
    }
    DBOS(config)
    with pytest.raises(DBOSConnectionError):
        await DBOS.launch()
    await DBOS.destroy()
    DBOS({"database_url": sqlite_url(tmp_path, "sys.sqlite")})
    await DBOS.launch()
    await run_echo(17)


def _leaked_pools() -> list[Any]:
    """The asyncpg pools of the current runtime (to clean up after a failed test only)."""
    from dbos_async._runtime import current_runtime

    rt = current_runtime()
    pools = []
    for db in (getattr(rt, "sysdb", None), getattr(rt, "appdb", None)):
        pg = getattr(db, "_pg", None)
        if pg is not None:
            pools.append(pg)
    return pools


async def test_launch__concurrent_calls_leave_no_connection_open_after_destroy(
    fresh_pg: str,
) -> None:
    database = fresh_pg.rsplit("/", 1)[1]
    DBOS({"database_url": fresh_pg, "application_version": "test"})
    pools = _leaked_pools()
    try:
        await asyncio.gather(DBOS.launch(), DBOS.launch())
        await run_echo(18)
        await DBOS.destroy()
        open_connections = await _admin_fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        )
        assert open_connections == 0
    finally:
        for pg in pools:  # without this a leaked pool warns at garbage collection
            pool = getattr(pg, "_pool", None)
            if pool is not None:
                pool.terminate()
                pg._pool = None


# --------------------------------------------------------------------------------------
# Decorators


def test_workflow_decorator__plain_def_raises_type_error() -> None:
    def cfg_plain(x: int) -> int:
        return x

    with pytest.raises(TypeError) as info:
        DBOS.workflow()(cfg_plain)  # type: ignore[arg-type]
    assert "async def" in str(info.value)
    assert "cfg_plain" in str(info.value)


def test_workflow_decorator__async_generator_raises_type_error() -> None:
    async def cfg_agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="cfg_agen"):
        DBOS.workflow()(cfg_agen)  # type: ignore[arg-type]


def test_workflow_decorator__lambda_raises_type_error() -> None:
    with pytest.raises(TypeError):
        DBOS.workflow()(lambda: 1)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("decorator", ["workflow", "step", "transaction", "communicator"])
def test_decorators__without_parentheses_raise_type_error(decorator: str) -> None:
    async def cfg_bare() -> int:
        return 1

    with pytest.raises(TypeError):
        getattr(DBOS, decorator)(cfg_bare)


@pytest.mark.parametrize("decorator", ["workflow", "step", "transaction"])
def test_decorators__without_parentheses_error_says_to_add_them(decorator: str) -> None:
    async def cfg_bare() -> int:
        return 1

    with pytest.raises(TypeError, match="parenthes"):
        getattr(DBOS, decorator)(cfg_bare)


def test_transaction_decorator__plain_def_raises_type_error() -> None:
    def cfg_plain_tx() -> None:
        return None

    with pytest.raises(TypeError) as info:
        DBOS.transaction()(cfg_plain_tx)  # type: ignore[arg-type]
    assert "async def" in str(info.value)
    assert "cfg_plain_tx" in str(info.value)


def test_step_decorator__generator_raises_type_error() -> None:
    def cfg_gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="cfg_gen"):
        DBOS.step()(cfg_gen)


@pytest.mark.parametrize("level", ["SNAPSHOT", "", "serializable-ish", 5, None], ids=repr)
def test_transaction_decorator__invalid_isolation_level_raises_config_error(level: Any) -> None:
    with pytest.raises(DBOSConfigError, match="isolation_level"):
        DBOS.transaction(isolation_level=level)


@pytest.mark.parametrize("attempts", [0, -1, "3", 2.5, True], ids=repr)
def test_step_decorator__invalid_max_attempts_raises_config_error(attempts: Any) -> None:
    with pytest.raises(DBOSConfigError, match="max_attempts"):
        DBOS.step(retries_allowed=True, max_attempts=attempts)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("interval_seconds", -1),
        ("interval_seconds", "1"),
        ("backoff_rate", 0),
        ("backoff_rate", -2),
    ],
    ids=repr,
)
def test_step_decorator__invalid_retry_timing_raises_config_error(option: str, value: Any) -> None:
    with pytest.raises(DBOSConfigError, match=option):
        DBOS.step(retries_allowed=True, **{option: value})


@pytest.mark.parametrize("attempts", [-1, "100", 1.5], ids=repr)
def test_workflow_decorator__invalid_max_recovery_attempts_raises_config_error(
    attempts: Any,
) -> None:
    with pytest.raises(DBOSConfigError, match="max_recovery_attempts"):
        DBOS.workflow(max_recovery_attempts=attempts)


@pytest.mark.parametrize("decorator", ["workflow", "step", "transaction"])
@pytest.mark.parametrize("name", ["", 5], ids=repr)
def test_decorators__invalid_name_raises_config_error(decorator: str, name: Any) -> None:
    with pytest.raises(DBOSConfigError, match="name"):
        getattr(DBOS, decorator)(name=name)


def test_workflow_decorator__same_name_for_two_functions_raises_config_error() -> None:
    async def cfg_first() -> None:
        return None

    async def cfg_second() -> None:
        return None

    DBOS.workflow(name="cfg_shared_name")(cfg_first)
    with pytest.raises(DBOSConfigError, match="cfg_shared_name"):
        DBOS.workflow(name="cfg_shared_name")(cfg_second)


# --------------------------------------------------------------------------------------
# One instance; nothing runs without a launched instance


def test_dbos__second_instance_raises(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    with pytest.raises(DBOSException, match="already"):
        DBOS({"database_url": sqlite_url(tmp_path, "other.sqlite")})


async def test_dbos__first_instance_survives_a_rejected_second(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path, "first.sqlite")})
    with pytest.raises(DBOSException):
        DBOS({"database_url": sqlite_url(tmp_path, "second.sqlite")})
    await DBOS.launch()
    await run_echo(12)
    assert (tmp_path / "first.sqlite").is_file()
    assert not (tmp_path / "second.sqlite").exists()


async def test_dbos__new_instance_allowed_after_destroy(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    await DBOS.destroy()
    await DBOS.destroy()  # a second destroy is harmless
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    await run_echo(13)


async def test_workflow_call__without_dbos_raises_dbos_exception() -> None:
    with pytest.raises(DBOSException):
        await cfg_echo(1)
    with pytest.raises(DBOSException):
        await DBOS.start_workflow(cfg_echo, 1)
    with pytest.raises(DBOSException):
        await DBOS.get_workflow_status("nope")


async def test_workflow_call__before_launch_raises_dbos_exception(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    with pytest.raises(DBOSException, match="launch"):
        await cfg_echo(1)
    with pytest.raises(DBOSException, match="launch"):
        await DBOS.start_workflow(cfg_echo, 1)


async def test_workflow_call__after_destroy_raises_dbos_exception(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    await run_echo(14)
    await DBOS.destroy()
    with pytest.raises(DBOSException):
        await cfg_echo(1)


async def test_launch__without_dbos_raises_dbos_exception() -> None:
    with pytest.raises(DBOSException):
        await DBOS.launch()


async def test_dbos__async_with_launches_and_destroys(tmp_path: Path) -> None:
    async with DBOS({"database_url": sqlite_url(tmp_path)}) as dbos:
        assert isinstance(dbos, DBOS)
        workflow_id = await run_echo(15)
        assert await DBOS.get_workflow_status(workflow_id) is not None
    with pytest.raises(DBOSException):
        await cfg_echo(1)
    DBOS({"database_url": sqlite_url(tmp_path)})  # the instance is gone


async def test_dbos__launch_twice_is_harmless(tmp_path: Path) -> None:
    DBOS({"database_url": sqlite_url(tmp_path)})
    await DBOS.launch()
    await asyncio.wait_for(DBOS.launch(), 5)
    await run_echo(16)


# -- DBOS Transact's configuration keys ------------------------------------------------


def test_dbos_config__a_dbos_transact_dict_is_accepted_with_one_warning_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dbos_style = {
        "name": "shop",
        "system_database_url": "sqlite:///sys.sqlite",
        "application_database_url": "sqlite:///app.sqlite",
        "sys_db_pool_size": 7,
        "enable_otlp": True,
        "otlp_traces_endpoints": ["http://collector:4318"],
        "run_admin_server": False,
        "conductor_key": None,  # (None means unset: no warning)
    }
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        settings = resolve_config(dbos_style)
    assert settings.database_url == "sqlite:///app.sqlite"
    assert settings.system_database_url == "sqlite:///sys.sqlite"
    assert settings.pool_size == 7
    warned = sorted(r.getMessage() for r in caplog.records)
    assert len(warned) == 3
    assert all("has no effect in dbos_async" in m for m in warned)
    assert "'enable_otlp'" in warned[0] and "tracer provider" in warned[0]
    assert "'otlp_traces_endpoints'" in warned[1]
    assert "'run_admin_server'" in warned[2] and "admin server" in warned[2]


def test_dbos_config__only_a_system_database_runs_transactions_there_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DBOS_DATABASE_URL", raising=False)
    settings = resolve_config({"system_database_url": "sqlite:///only.sqlite"})
    assert settings.database_url == settings.system_database_url == "sqlite:///only.sqlite"


def test_dbos_config__both_names_of_one_key_must_agree() -> None:
    same = resolve_config(
        {"database_url": "sqlite:///a.sqlite", "application_database_url": "sqlite:///a.sqlite"}
    )
    assert same.database_url == "sqlite:///a.sqlite"
    with pytest.raises(DBOSConfigError, match="'database_url' and 'application_database_url'"):
        resolve_config(
            {"database_url": "sqlite:///a.sqlite", "application_database_url": "sqlite:///b.sqlite"}
        )
    with pytest.raises(DBOSConfigError, match="'pool_size' and 'sys_db_pool_size'"):
        resolve_config({"pool_size": 3, "sys_db_pool_size": 4})
    with pytest.raises(DBOSConfigError, match="pool_size"):
        resolve_config({"sys_db_pool_size": 0})


def test_dbos_config__log_level_sets_the_librarys_logger() -> None:
    logger = logging.getLogger("dbos_async")
    before = logger.level
    try:
        resolve_config({"log_level": "debug"})
        assert logger.level == logging.DEBUG
        with pytest.raises(DBOSConfigError, match="log_level"):
            resolve_config({"log_level": "LOUD"})
    finally:
        logger.setLevel(before)


def test_dbos_config__keys_of_neither_library_are_still_refused() -> None:
    with pytest.raises(DBOSConfigError, match="unknown config key"):
        resolve_config({"databse_url": "sqlite:///typo.sqlite"})
