"""``dbos_async.run``: asyncio.run on uvloop when it is installed; workflows run there on
both backends."""

from __future__ import annotations

import asyncio
import sys

import pytest

import dbos_async
from dbos_async import DBOS, SetWorkflowID


@DBOS.step()
async def loop_step(x: int) -> str:
    return f"{x}:{type(asyncio.get_running_loop()).__module__}"


@DBOS.workflow()
async def loop_workflow(x: int) -> str:
    await DBOS.sleep(0.01)
    return await loop_step(x)


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run__uses_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_ASYNC_LOOP", raising=False)
    assert dbos_async.run(loop_module()).startswith("uvloop")


def test_run__asyncio_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_ASYNC_LOOP", "asyncio")
    assert dbos_async.run(loop_module()).startswith("asyncio")


def test_run__standard_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_ASYNC_LOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert dbos_async.run(loop_module()).startswith("asyncio")


def test_run__uvloop_demanded_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_ASYNC_LOOP", "uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(ImportError, match=r"dbos_async\[standard\]"):
        dbos_async.run(loop_module())  # (the coroutine is closed: no "never awaited")


def test_run__bad_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_ASYNC_LOOP", "trio")
    with pytest.raises(ValueError, match="DBOS_ASYNC_LOOP must be 'uvloop' or 'asyncio'"):
        dbos_async.run(loop_module())


def test_run__returns_and_raises_like_asyncio_run() -> None:
    async def fail() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        dbos_async.run(fail())


def test_run__workflows_on_uvloop(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_ASYNC_LOOP", raising=False)

    async def main() -> tuple[str, str]:
        async with DBOS({"database_url": db_url, "application_version": "loop"}):
            with SetWorkflowID("on-uvloop"):
                first = await loop_workflow(7)
            with SetWorkflowID("on-uvloop"):
                again = await loop_workflow(7)  # the recorded result, not a rerun
            return first, again

    first, again = dbos_async.run(main())
    assert first == again == "7:uvloop"
