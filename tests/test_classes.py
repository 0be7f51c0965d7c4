"""Classes whose methods are workflows, steps and transactions (API.md section 11, DBOS
Transact's ``@DBOS.dbos_class()`` and ``DBOSConfiguredInstance``): what is stored
(``class_name``, ``config_name``, the arguments after ``self``/``cls``), the errors for
classes that cannot be run again, and every way a stored method workflow runs again
(recovery, resume, fork, a queue's claim, a client's enqueue) on the instance or class
registered under its names, including after a real process was killed."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSConfigError,
    DBOSConfiguredInstance,
    DBOSConflictingWorkflowError,
    Queue,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._recovery import take_over_orphans
from dbos_async._registry import registry
from dbos_async._runtime import get_runtime
from dbos_async.testing import crash_and_recover

from . import classes_app

POLL = 0.1
Q = Queue("classes_q", polling_interval_sec=POLL)
registry.queues.pop(Q.name, None)


@pytest.fixture(autouse=True)
def _module_queue() -> Iterator[None]:
    """Declare this module's queue for the test (before the ``dbos`` fixture launches)."""
    registry.queues[Q.name] = Q
    try:
        yield
    finally:
        registry.queues.pop(Q.name, None)


#: Gates the blocking workflows wait on, by instance name; reset before every test.
GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


@pytest.fixture(autouse=True)
def _reset() -> None:
    GATES.clear()
    for inst in (ALPHA, BETA):
        inst.calls.clear()


# -- the classes -------------------------------------------------------------------------


@DBOS.dbos_class()
class Account(DBOSConfiguredInstance):
    """Instance methods of every kind; the result names the instance that ran it."""

    def __init__(self, name: str, factor: int) -> None:
        super().__init__(name)
        self.factor = factor
        self.calls: list[str] = []

    @DBOS.step()
    async def scale(self, x: int) -> int:
        self.calls.append(f"scale {x}")
        return x * self.factor

    @DBOS.step()
    def scale_sync(self, x: int) -> int:
        self.calls.append(f"scale_sync {x}")
        return x * self.factor

    @DBOS.transaction()
    async def query(self, x: int) -> int:
        self.calls.append(f"query {x}")
        await DBOS.sql_connection.execute("SELECT 1")
        return x + 1

    @DBOS.workflow()
    async def compute(self, x: int, *, label: str = "r") -> str:
        self.calls.append(f"compute {x}")
        a = await self.scale(x)
        b = await self.scale_sync(a)
        c = await self.query(b)
        return f"{label}:{self.config_name}:{c}"

    @DBOS.workflow()
    async def blocked(self, x: int) -> str:
        self.calls.append(f"blocked {x}")
        await self.scale(x)
        await gate(self.config_name).wait()
        return f"{self.config_name}:{await self.scale(x + 1)}"

    @classmethod
    @DBOS.workflow()
    async def on_class(cls, x: int) -> str:
        return f"{cls.__name__}:{await cls.class_step(x)}"

    @classmethod
    @DBOS.step()
    async def class_step(cls, x: int) -> int:
        return x * 7

    @staticmethod
    @DBOS.workflow()
    async def on_static(x: int) -> int:
        return await Account.static_step(x) + 1

    @staticmethod
    @DBOS.step()
    async def static_step(x: int) -> int:
        return x * 3


ALPHA = Account("alpha", 10)
BETA = Account("beta", 100)


@DBOS.dbos_class("renamed-ledger")
class Ledger(DBOSConfiguredInstance):
    """Registered under a name of its own choosing."""

    @DBOS.workflow()
    async def total(self, xs: list[int]) -> int:
        return sum(xs)

    @classmethod
    @DBOS.workflow()
    async def kind(cls) -> str:
        return cls.__name__


LEDGER = Ledger("main")


class Plain:
    """Not decorated: its steps work (their arguments are not stored)."""

    def __init__(self, base: int) -> None:
        self.base = base

    @DBOS.step()
    async def add(self, x: int) -> int:
        return self.base + x


@DBOS.workflow()
async def uses_plain_steps(x: int) -> int:
    plain = Plain(5)
    return await plain.add(x) + await plain.add(x)


async def wait_steps(workflow_id: str, count: int) -> None:
    for _ in range(500):
        if len(await DBOS.list_workflow_steps(workflow_id)) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"workflow {workflow_id} did not record {count} steps")


async def relaunch(db_url: str) -> None:
    """Stop this process's DBOS (running workflows stay PENDING) and launch a new one on
    the same database, which recovers them."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


# -- what is stored ----------------------------------------------------------------------


async def test_classes__instance_workflow_records_class_and_instance(dbos: DBOS) -> None:
    assert await ALPHA.compute(2) == "r:alpha:201"
    with SetWorkflowID("cls-inst-1"):
        handle = await DBOS.start_workflow(BETA.compute, 3, label="s")
    assert await handle.get_result() == "s:beta:30001"
    status = await handle.get_status()
    assert (status.name, status.class_name, status.config_name) == (
        Account.compute.__qualname__,
        "Account",
        "beta",
    )
    # The instance is not stored: the arguments are those after self.
    assert status.input == {"args": [3], "kwargs": {"label": "s"}}
    steps = await DBOS.list_workflow_steps("cls-inst-1")
    assert [s.function_name for s in steps] == [
        "Account.scale",
        "Account.scale_sync",
        "Account.query",
    ]
    assert BETA.calls == ["compute 3", "scale 3", "scale_sync 300", "query 30000"]
    assert ALPHA.calls == ["compute 2", "scale 2", "scale_sync 20", "query 200"]
    # Started again under its ID, it returns the recorded result without running.
    with SetWorkflowID("cls-inst-1"):
        assert await BETA.compute(3, label="s") == "s:beta:30001"
    assert BETA.calls.count("compute 3") == 1


async def test_classes__classmethod_records_class_staticmethod_records_nothing(
    dbos: DBOS,
) -> None:
    assert await Account.on_class(2) == "Account:14"
    handle = await DBOS.start_workflow(Account.on_class, 3)
    assert await handle.get_result() == "Account:21"
    status = await handle.get_status()
    assert (status.class_name, status.config_name) == ("Account", None)
    assert status.input == {"args": [3], "kwargs": {}}
    # (Through an instance, a classmethod is still the class's.)
    handle = await DBOS.start_workflow(ALPHA.on_class, 4)
    assert await handle.get_result() == "Account:28"
    assert (await handle.get_status()).config_name is None

    handle = await DBOS.start_workflow(Account.on_static, 2)
    assert await handle.get_result() == 7
    status = await handle.get_status()
    assert (status.class_name, status.config_name) == (None, None)
    assert await ALPHA.on_static(1) == 4


async def test_classes__registered_class_name_is_stored(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(LEDGER.total, [1, 2, 3])
    assert await handle.get_result() == 6
    status = await handle.get_status()
    assert (status.class_name, status.config_name) == ("renamed-ledger", "main")
    handle = await DBOS.start_workflow(Ledger.kind)
    assert await handle.get_result() == "Ledger"
    assert (await handle.get_status()).class_name == "renamed-ledger"
    listed = await DBOS.list_workflows(workflow_ids=[handle.workflow_id])
    assert listed[0].class_name == "renamed-ledger"


async def test_classes__steps_of_an_undecorated_class_work_in_workflows(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(uses_plain_steps, 1)
    assert await handle.get_result() == 12
    steps = await DBOS.list_workflow_steps(handle.workflow_id)
    assert [(s.function_name, s.output) for s in steps] == [("Plain.add", 6), ("Plain.add", 6)]
    assert await Plain(1).add(1) == 2  # outside a workflow the step simply runs


# -- errors ------------------------------------------------------------------------------


async def test_classes__instance_workflow_without_config_name_is_refused(dbos: DBOS) -> None:
    @DBOS.dbos_class()
    class NoName:
        @DBOS.workflow()
        async def work(self) -> str:
            return "never"

    with pytest.raises(DBOSConfigError, match="DBOSConfiguredInstance"):
        await NoName().work()
    assert await DBOS.list_workflows(name=NoName.work.__qualname__) == []


async def test_classes__methods_of_an_undecorated_class_are_refused(dbos: DBOS) -> None:
    class Forgot(DBOSConfiguredInstance):
        @DBOS.workflow()
        async def work(self) -> str:
            return "never"

        @classmethod
        @DBOS.workflow()
        async def work_on_class(cls) -> str:
            return "never"

    inst = Forgot("forgot")
    with pytest.raises(DBOSConfigError, match=r"@DBOS\.dbos_class"):
        await inst.work()
    with pytest.raises(DBOSConfigError, match=r"@DBOS\.dbos_class"):
        await DBOS.start_workflow(Forgot.work_on_class)
    assert await DBOS.list_workflows() == []


async def test_classes__duplicate_instance_and_class_names_are_refused(dbos: DBOS) -> None:
    @DBOS.dbos_class()
    class Dup(DBOSConfiguredInstance):
        pass

    first = Dup("one")
    Dup("two")  # another name: fine
    with pytest.raises(DBOSConfigError, match="named 'one' is already registered"):
        Dup("one")
    assert registry.instances[(Dup.__qualname__, "one")] is first
    DBOS.register_instance(first)  # the same instance again: fine

    with pytest.raises(DBOSConfigError, match="'renamed-ledger' is already registered"):

        @DBOS.dbos_class("renamed-ledger")
        class Other:
            pass

    with pytest.raises(ValueError, match="non-empty"):
        Dup("")
    with pytest.raises(TypeError, match="parentheses"):
        DBOS.dbos_class(Dup)  # type: ignore[arg-type]


async def test_classes__redefined_class_replaces_the_first(dbos: DBOS) -> None:
    """The same class defined again (a reloaded module, a test run twice) replaces the
    first, and an instance of it may take a name the old definition's instance had."""
    made = []
    for _ in range(2):

        @DBOS.dbos_class()
        class Again(DBOSConfiguredInstance):
            @DBOS.workflow()
            async def who(self) -> str:
                return self.config_name

        made.append(Again("same"))
    assert registry.instances[(made[1].__class__.__qualname__, "same")] is made[1]
    assert await made[1].who() == "same"
    with pytest.raises(DBOSConfigError, match="not the one registered"):
        await made[0].who()


async def test_classes__same_id_on_another_instance_conflicts(dbos: DBOS) -> None:
    with SetWorkflowID("cls-conflict"):
        assert await ALPHA.compute(1) == "r:alpha:101"
    with SetWorkflowID("cls-conflict"), pytest.raises(DBOSConflictingWorkflowError) as info:
        await BETA.compute(1)
    assert "instance 'alpha'" in str(info.value) and "instance 'beta'" in str(info.value)
    with SetWorkflowID("cls-conflict"), pytest.raises(DBOSConflictingWorkflowError):
        await Q.enqueue(BETA.compute, 1)


# -- running again on the registered instance --------------------------------------------


async def test_classes__recovered_workflow_runs_on_its_instance(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("cls-recover-beta"):
        await DBOS.start_workflow(BETA.blocked, 4)
    with SetWorkflowID("cls-recover-cls"):
        await DBOS.start_workflow(Account.on_class, 5)
    await wait_steps("cls-recover-beta", 1)
    await relaunch(db_url)  # the new runtime recovers it, on BETA (not ALPHA)
    gate("beta").set()
    handle = await DBOS.retrieve_workflow("cls-recover-beta")
    assert await handle.get_result() == "beta:500"
    status = await handle.get_status()
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.recovery_attempts >= 1
    assert BETA.calls == ["blocked 4", "scale 4", "blocked 4", "scale 5"]
    assert ALPHA.calls == []
    assert await (await DBOS.retrieve_workflow("cls-recover-cls")).get_result() == "Account:35"


async def test_classes__recovery_without_the_instance_waits_for_it(
    dbos: DBOS, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A workflow whose instance is not registered here is not run: it stays PENDING
    (a warning says why), and runs once the instance is registered."""

    @DBOS.dbos_class()
    class Late(DBOSConfiguredInstance):
        @DBOS.workflow()
        async def wait_here(self) -> str:
            await gate(self.config_name).wait()
            return self.config_name

    late = Late("late")
    with SetWorkflowID("cls-late"):
        await DBOS.start_workflow(late.wait_here)
    del registry.instances[(Late.__qualname__, "late")]  # as if never created here
    gate("late").set()
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        await relaunch(db_url)
        await take_over_orphans(get_runtime())
    warned = [r.getMessage() for r in caplog.records if "cls-late" in r.getMessage()]
    assert len(warned) == 1, warned  # once, not at every takeover
    assert "no instance of class" in warned[0] and "'late'" in warned[0]
    status = await DBOS.get_workflow_status("cls-late")
    assert status is not None and status.status == WorkflowStatusString.PENDING

    DBOS.register_instance(late)
    await take_over_orphans(get_runtime())
    assert await (await DBOS.retrieve_workflow("cls-late")).get_result() == "late"


async def test_classes__enqueued_method_workflows_run_on_their_instance(dbos: DBOS) -> None:
    beta = await Q.enqueue(BETA.compute, 2, label="q")
    on_class = await Q.enqueue(Account.on_class, 1)
    on_static = await Q.enqueue(Account.on_static, 1)
    assert await beta.get_result() == "q:beta:20001"
    assert await on_class.get_result() == "Account:7"
    assert await on_static.get_result() == 4
    status = await beta.get_status()
    assert (status.queue_name, status.class_name, status.config_name) == (
        "classes_q",
        "Account",
        "beta",
    )
    assert ALPHA.calls == []


async def test_classes__method_workflows_on_a_queue_registered_at_run_time(dbos: DBOS) -> None:
    queue = await DBOS.register_queue("classes_runtime_q")
    by_name = await DBOS.enqueue_workflow("classes_runtime_q", BETA.compute, 3, label="n")
    on_queue = await queue.enqueue(Account.on_class, 2)
    assert await by_name.get_result() == "n:beta:30001"
    assert await on_queue.get_result() == "Account:14"
    status = await by_name.get_status()
    assert (status.queue_name, status.class_name, status.config_name) == (
        "classes_runtime_q",
        "Account",
        "beta",
    )
    assert ALPHA.calls == []


async def test_classes__child_method_workflows_from_a_workflow(dbos: DBOS) -> None:
    @DBOS.workflow()
    async def parent() -> list[str]:
        first = await ALPHA.compute(1)
        handle = await DBOS.start_workflow(BETA.compute, 1)
        queued = await Q.enqueue(LEDGER.total, [4, 5])
        return [first, await handle.get_result(), str(await queued.get_result())]

    handle = await DBOS.start_workflow(parent)
    assert await handle.get_result() == ["r:alpha:101", "r:beta:10001", "9"]
    children = await DBOS.list_workflows(parent_workflow_id=handle.workflow_id)
    assert sorted((c.class_name, c.config_name) for c in children) == [
        ("Account", "alpha"),
        ("Account", "beta"),
        ("renamed-ledger", "main"),
    ]


async def test_classes__fork_and_resume_run_on_the_same_instance(dbos: DBOS) -> None:
    with SetWorkflowID("cls-fork-src"):
        assert await BETA.compute(2) == "r:beta:20001"
    BETA.calls.clear()
    with SetWorkflowID("cls-fork"):
        forked = await DBOS.fork_workflow("cls-fork-src", 3)
    assert await forked.get_result() == "r:beta:20001"
    assert BETA.calls == ["compute 2", "query 20000"]  # steps 1-2 reused
    status = await forked.get_status()
    assert (status.class_name, status.config_name, status.forked_from) == (
        "Account",
        "beta",
        "cls-fork-src",
    )

    with SetWorkflowID("cls-resume"):
        await DBOS.start_workflow(ALPHA.blocked, 1)
    await wait_steps("cls-resume", 1)
    await DBOS.cancel_workflow("cls-resume")
    gate("alpha").set()
    resumed = await DBOS.resume_workflow("cls-resume")
    assert await resumed.get_result() == "alpha:20"
    assert BETA.calls == ["compute 2", "query 20000"]


async def test_classes__client_enqueues_a_method_by_names(dbos: DBOS, db_url: str) -> None:
    async with DBOSClient(db_url) as client:
        handle = await client.enqueue(
            {
                "queue_name": "classes_q",
                "workflow_name": Account.compute.__qualname__,
                "class_name": "Account",
                "instance_name": "beta",
            },
            3,
            label="c",
        )
        assert await handle.get_result() == "c:beta:30001"
        on_class = await client.enqueue(
            {
                "queue_name": "classes_q",
                "workflow_name": Account.on_class.__qualname__,
                "class_name": "Account",
            },
            2,
        )
        assert await on_class.get_result() == "Account:14"
        with pytest.raises(TypeError, match="needs options\\['class_name'\\]"):
            await client.enqueue(
                {"queue_name": "classes_q", "workflow_name": "x", "instance_name": "beta"}
            )
        # A name this process has no instance for: recorded as an error, not left pending.
        missing = await client.enqueue(
            {
                "queue_name": "classes_q",
                "workflow_name": Account.compute.__qualname__,
                "class_name": "Account",
                "instance_name": "gamma",
            },
            1,
        )
        with pytest.raises(Exception, match="no instance of class 'Account' named 'gamma'"):
            await missing.get_result()
    assert BETA.calls[0] == "compute 3"


# -- crashes of real processes -----------------------------------------------------------


async def test_classes__crash_and_recover_a_bound_method(dbos: DBOS, tmp_path: Path) -> None:
    """Killed after step 2 in a child process, the workflow is recovered here on the
    instance registered under its name (``triple``, not ``double``)."""
    log = tmp_path / "log"
    assert classes_app.triple is not None
    report = await crash_and_recover(classes_app.triple.run, 5, str(log), crash_after_step=2)
    assert report.result == {
        "instance": "triple",
        "value": 15,
        "steps": ["triple:step1", "triple:step2", "triple:step3"],
    }
    assert (report.status.class_name, report.status.config_name) == ("Multiplier", "triple")
    assert log.read_text().splitlines() == ["triple:step1", "triple:step2", "triple:step3"]

    log.unlink()
    report = await crash_and_recover(
        classes_app.Multiplier.run_on_class, 2, str(log), crash_after_step=1
    )
    assert report.result == "Multiplier:2"
    assert report.status.class_name == "Multiplier"
    assert log.read_text().splitlines() == ["class-step1", "class-step2"]


APP = Path(classes_app.__file__)


def run_app(
    role: str, db_url: str, workdir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP), role, db_url, str(workdir)],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )


def outcome(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.crash
def test_classes__killed_instance_workflow_recovers_on_its_instance(
    db_url: str, tmp_path: Path
) -> None:
    """A process SIGKILLed after step 2 of ``triple.run``; a process without ``triple``
    leaves it PENDING and says why; one with both instances finishes it on ``triple``."""
    crash = {"DBOS_ASYNC_CRASH_AFTER_STEP": f"2:{classes_app.WORKFLOW_ID}"}
    first = run_app("start", db_url, tmp_path, crash)
    assert first.returncode == -signal.SIGKILL, first.stderr
    log = tmp_path / "log"
    assert log.read_text().splitlines() == ["triple:step1", "triple:step2"]

    missing = outcome(run_app("recover-missing", db_url, tmp_path, {"CLASSES_APP_ONLY": "double"}))
    assert missing["status"] == "PENDING"
    assert any(
        "no instance of class 'Multiplier' named 'triple'" in line for line in missing["logged"]
    ), missing
    assert log.read_text().splitlines() == ["triple:step1", "triple:step2"]

    result = outcome(run_app("recover", db_url, tmp_path))
    assert result["result"] == {
        "instance": "triple",
        "value": 15,
        "steps": ["triple:step1", "triple:step2", "triple:step3"],
    }
    assert (result["status"], result["class_name"], result["config_name"]) == (
        "SUCCESS",
        "Multiplier",
        "triple",
    )
    assert log.read_text().splitlines() == ["triple:step1", "triple:step2", "triple:step3"]
