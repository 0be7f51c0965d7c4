"""Testing what a crash does to your workflows: ``crash_and_recover``.

``await crash_and_recover(wf, *args, crash_after_step=N, **kwargs)`` runs the workflow
``wf`` in a child process that is killed with SIGKILL the moment the checkpoint of its
step ``N`` is durable (no exit handler, no ``finally`` runs there: a real crash), then lets
the DBOS runtime launched in the calling process take the orphaned workflow over and run
it to its end, and returns a ``CrashReport``: the recovered result and the workflow's
recorded steps. A test then checks what matters to its application: the result is right,
and the side effects of steps 1..N happened once.

Step IDs are the ``function_id`` of ``DBOS.list_workflow_steps``: 1, 2, 3... in the order
the workflow reaches its steps, transactions, child workflow starts, ``DBOS.sleep``,
``send``, ``set_event`` and streams; ``recv`` and ``get_event`` take two (the second for
their deadline, recorded only if they had to wait).

The calling process needs a launched ``DBOS`` (the pytest plugin's ``dbos`` fixture, or
``DBOS(config)`` and ``await DBOS.launch()``) on a database a second process can open:
Postgres, or a SQLite file (not ``sqlite:///:memory:``). The workflow must be defined at
the top level of an importable module (the child imports it by name, with the caller's
``sys.path``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import _host
from ._classes import split_receiver, with_bound_receiver
from ._clock import now_ms
from ._context import current_workflow, take_assigned_workflow_id
from ._dbos import DBOS
from ._decorators import function_info
from ._errors import DBOSException
from ._ids import check_workflow_id
from ._registry import FunctionInfo
from ._runtime import Runtime, current_runtime
from ._serialization import JSONSerializer, PickleSerializer
from ._status import StepInfo, WorkflowStatus
from ._urls import SQLITE_PREFIX, is_sqlite_url, sqlite_path

__all__ = [
    "CHILD_TIMEOUT_SECONDS",
    "RECOVERY_TIMEOUT_SECONDS",
    "CrashReport",
    "crash_and_recover",
]

R = TypeVar("R")

#: How long the child process may take to start and reach the crash (seconds); past
#: that it is killed, its workflow cancelled, and ``crash_and_recover`` fails.
CHILD_TIMEOUT_SECONDS = 60.0
#: How long the recovered workflow may take to finish in this process (seconds).
RECOVERY_TIMEOUT_SECONDS = 60.0

#: The child's exit status when the workflow ended without reaching the crash step, and
#: when it could not even start it (bad import, bad config): see ``_crash_child``.
ENDED_STATUS = 0
SETUP_FAILED_STATUS = 3
_CRASH_ENV = "DBOS_ASYNC_CRASH_AFTER_STEP"
_KILL_MARKER = "dbos_async: killing this process after step"


@dataclass(frozen=True)
class CrashReport(Generic[R]):
    """What ``crash_and_recover`` saw: a workflow crashed after one step and recovered."""

    workflow_id: str
    """The crashed and recovered workflow's ID."""
    result: R
    """The recovered workflow's result (what awaiting it returns)."""
    steps: list[StepInfo]
    """Every step the workflow recorded, after recovery (``DBOS.list_workflow_steps``)."""
    crash_after_step: int
    """The step ID whose durable checkpoint killed the child process."""
    steps_at_crash: list[StepInfo]
    """The steps recorded when the child process died (1..crash_after_step, or more when
    steps ran concurrently in ``asyncio.gather``)."""
    child_pid: int
    """The PID of the child process that crashed."""
    exit_signal: int
    """The signal that ended the child process (``signal.SIGKILL``)."""
    status: WorkflowStatus
    """The workflow's status after recovery (``recovery_attempts``, ``executor_id``...)."""

    def step(self, step_id: int) -> StepInfo:
        """The recorded step with ID ``step_id``; ``KeyError`` if there is none."""
        for info in self.steps:
            if info.function_id == step_id:
                return info
        raise KeyError(f"workflow {self.workflow_id!r} recorded no step {step_id}")


async def crash_and_recover(
    wf: Callable[..., Coroutine[Any, Any, R]],
    *args: Any,
    crash_after_step: int,
    **kwargs: Any,
) -> CrashReport[R]:
    """Run the workflow ``wf(*args, **kwargs)`` in a child process, kill that process with
    SIGKILL right after the checkpoint of step ``crash_after_step`` (1-based) commits, then
    recover the workflow in this process and return a ``CrashReport`` with its result and
    recorded steps. The last step's checkpoint commits together with the workflow's
    outcome, so a crash after the last step finds the workflow already finished: nothing
    is recovered (``status.recovery_attempts`` stays 0), and the report shows that.

    Needs a launched ``DBOS`` in this process; the child uses its database URLs, its
    serializer and its application version (so this process may take the workflow over),
    under its own executor ID ``<executor_id>-crash-child``. Arguments travel to the child
    through the runtime's serializer, as a workflow's inputs are recorded. The workflow ID
    is a new UUID, or the one a surrounding ``with SetWorkflowID(...)`` names.

    ``wf`` may be a bound method of a ``@DBOS.dbos_class()`` class (``inst.wf``,
    ``Cls.wf``): the child runs it on the instance (or class) its module registers under
    the same names, and this process recovers it on its own.

    Raises ``DBOSException`` when DBOS is not launched here, the database is
    ``sqlite:///:memory:``, ``wf`` is not a ``@DBOS.workflow`` importable by module and
    name, the workflow ended (or failed) before reaching step ``crash_after_step``, or the
    child or the recovery took too long (``CHILD_TIMEOUT_SECONDS``,
    ``RECOVERY_TIMEOUT_SECONDS``). If the recovered workflow raises, that error is raised
    here, as awaiting the workflow would.
    """
    if (
        isinstance(crash_after_step, bool)
        or not isinstance(crash_after_step, int)
        or crash_after_step < 1
    ):
        raise ValueError(
            f"crash_after_step must be a step ID (an int, 1 or more), got {crash_after_step!r}"
        )
    if current_workflow.get() is not None:
        raise DBOSException(
            "crash_and_recover cannot be called inside a workflow: call it from a test"
        )
    rt = _launched_runtime()
    info = _workflow_info(wf)
    config = _child_config(rt)
    workflow_id = take_assigned_workflow_id() or str(uuid.uuid4())
    check_workflow_id(workflow_id, "workflow ID")
    if await DBOS.get_workflow_status(workflow_id) is not None:
        raise DBOSException(
            f"crash_and_recover: workflow {workflow_id!r} already exists; it would not run "
            "again in the child process. Use a new workflow ID."
        )
    # A bound method (``inst.wf``, ``Cls.wf``) runs in the child on the instance or class
    # registered there under the same names, as a recovered workflow would.
    receiver = split_receiver(info, with_bound_receiver(wf, args))
    inputs = rt.codec.dump_inputs(info.name, info.stored_signature, receiver.args, kwargs)
    spec = {
        "module": wf.__module__,
        "qualname": wf.__qualname__,
        "workflow_name": info.name,
        "workflow_id": workflow_id,
        "inputs": inputs,
        "class_name": receiver.class_name,
        "config_name": receiver.config_name,
        "config": config,
        "serializer": _serializer_spec(rt),
        "parent_pid": os.getpid(),
    }
    workdir = Path(tempfile.mkdtemp(prefix="dbos_async_crash_"))
    try:
        child_pid, stderr = await _run_child(workdir, spec, workflow_id, crash_after_step)
        died_ms = now_ms()
        # (This process may begin the takeover as soon as the child is reaped: keep only
        # the steps the child recorded, which completed before it died. Step times are
        # this machine's clock, the child's as well as ours.)
        steps_at_crash = [
            s
            for s in await DBOS.list_workflow_steps(workflow_id)
            if s.completed_at_epoch_ms is None or s.completed_at_epoch_ms <= died_ms
        ]
        if not any(s.function_id == crash_after_step for s in steps_at_crash):
            raise DBOSException(
                f"crash_and_recover: the child process was killed but step {crash_after_step} "
                f"of workflow {workflow_id!r} is not recorded; its stderr:\n{_tail(stderr)}"
            )
        await _hand_over(rt, child_pid)
        handle = await DBOS.retrieve_workflow(workflow_id)
        try:
            async with asyncio.timeout(RECOVERY_TIMEOUT_SECONDS):
                result: R = await handle.get_result()
        except TimeoutError:
            status = await DBOS.get_workflow_status(workflow_id)
            raise DBOSException(
                f"crash_and_recover: workflow {workflow_id!r} did not finish within "
                f"{RECOVERY_TIMEOUT_SECONDS:g}s of its recovery (status "
                f"{status.status if status else None})"
            ) from None
        steps = await DBOS.list_workflow_steps(workflow_id)
        final = await DBOS.get_workflow_status(workflow_id)
        assert final is not None
        return CrashReport(
            workflow_id=workflow_id,
            result=result,
            steps=steps,
            crash_after_step=crash_after_step,
            steps_at_crash=steps_at_crash,
            child_pid=child_pid,
            exit_signal=int(signal.SIGKILL),
            status=final,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _launched_runtime() -> Runtime:
    rt = current_runtime()
    if rt is None or not rt.launched:
        raise DBOSException(
            "crash_and_recover needs a launched DBOS in this process to recover the crashed "
            "workflow: use the pytest plugin's `dbos` fixture, or create DBOS(config) and "
            "await DBOS.launch() first"
        )
    return rt


def _workflow_info(wf: object) -> FunctionInfo:
    info = function_info(wf)
    if info is None or info.kind != "workflow":
        raise DBOSException(
            f"crash_and_recover: {wf!r} is not a @DBOS.workflow function "
            f"({'a ' + info.kind if info else 'not decorated'})"
        )
    module = getattr(wf, "__module__", None) or ""
    qualname = getattr(wf, "__qualname__", "")
    where = f"{module}.{qualname}"
    if module == "__main__":
        raise DBOSException(
            f"crash_and_recover: workflow {where} is defined in __main__, which the child "
            "process cannot import; define it in a module"
        )
    if "<locals>" in qualname:
        raise DBOSException(
            f"crash_and_recover: workflow {where} is defined inside a function; the child "
            "process imports it by module and name, so define it at a module's top level"
        )
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    # (A method is found as its class's function; a bound one is compared by it.)
    if getattr(found, "__func__", found) is not getattr(wf, "__func__", wf):
        raise DBOSException(
            f"crash_and_recover: workflow {info.name!r} is not found as {where} (the name "
            "the child process imports it by); define it at a module's top level"
        )
    return info


def _child_config(rt: Runtime) -> dict[str, Any]:
    settings = rt.settings
    urls = {}
    for key in ("database_url", "system_database_url"):
        url: str = getattr(settings, key)
        if is_sqlite_url(url):
            path = sqlite_path(url)
            if path == ":memory:":
                raise DBOSException(
                    f"crash_and_recover: config {key!r} is sqlite:///:memory:, which another "
                    "process cannot open; use a SQLite file (sqlite:///path.sqlite) or Postgres"
                )
            url = SQLITE_PREFIX + os.path.abspath(path)
        urls[key] = url
    return {
        "name": settings.name,
        **urls,
        "executor_id": f"{settings.executor_id}-crash-child",
        # The same version as this process: only a process of the crashed workflow's
        # version takes it over.
        "application_version": rt.app_version,
        "pool_size": min(settings.pool_size, 4),
        "connect_timeout": settings.connect_timeout,
        "executor_lease_seconds": settings.executor_lease_seconds,
        # (So a workflow that calls DBOS.patch runs in the child as it does here.)
        "enable_patching": settings.enable_patching,
    }


def _serializer_spec(rt: Runtime) -> Any:
    serializer = rt.settings.serializer
    if type(serializer) is JSONSerializer:
        return "json"
    if type(serializer) is PickleSerializer:
        return "pickle"
    try:
        return {"pickled": base64.b64encode(pickle.dumps(serializer)).decode()}
    except Exception as exc:
        raise DBOSException(
            f"crash_and_recover: the custom serializer {serializer!r} cannot be handed to the "
            f"child process (it is pickled for that): {type(exc).__name__}: {exc}"
        ) from exc


def _child_env(workflow_id: str, step: int) -> dict[str, str]:
    env = dict(os.environ)
    # (Only real directories and archives: not the markers some path hooks keep there.)
    paths = [p or os.getcwd() for p in sys.path if isinstance(p, str)]
    paths = [p for p in paths if os.path.exists(p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[_CRASH_ENV] = f"{step}:{workflow_id}"
    return env


def _write_spec(workdir: Path, spec: dict[str, Any]) -> Path:
    path = workdir / "spec.json"
    path.write_text(json.dumps(spec))
    return path


async def _run_child(
    workdir: Path, spec: dict[str, Any], workflow_id: str, step: int
) -> tuple[int, str]:
    """Run the child until it dies; its PID and stderr once it died of the crash hook."""
    spec_path = _write_spec(workdir, spec)
    out_path, err_path = workdir / "stdout.txt", workdir / "stderr.txt"
    with contextlib.ExitStack() as files:
        out = files.enter_context(out_path.open("wb"))
        err = files.enter_context(err_path.open("wb"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dbos_async._crash_child",
            str(spec_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=_child_env(workflow_id, step),
        )
        try:
            async with asyncio.timeout(CHILD_TIMEOUT_SECONDS):
                code = await proc.wait()
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            await _abandon(workflow_id)
            if not isinstance(exc, TimeoutError):
                raise
            raise DBOSException(
                f"crash_and_recover: workflow {workflow_id!r} did not reach step {step} "
                f"within {CHILD_TIMEOUT_SECONDS:g}s in the child process; it was killed and "
                f"the workflow cancelled. Its stderr:\n{_tail(_read(err_path))}"
            ) from None
    stderr = _read(err_path)
    if code == -signal.SIGKILL and _KILL_MARKER in stderr:
        return proc.pid, stderr
    if code == ENDED_STATUS:
        steps = await DBOS.list_workflow_steps(workflow_id)
        status = await DBOS.get_workflow_status(workflow_id)
        state = status.status if status is not None else "unknown"
        raise DBOSException(
            f"crash_and_recover: workflow {spec['workflow_name']!r} ({workflow_id}) never "
            f"reached step {step}: it ended with status {state} after {len(steps)} "
            f"step{'' if len(steps) == 1 else 's'} "
            f"({', '.join(f'{s.function_id}:{s.function_name}' for s in steps) or 'none'})"
        )
    if code == -signal.SIGKILL:
        await _abandon(workflow_id)
        why = "was killed by SIGKILL, but not by the crash hook"
    elif code < 0:
        await _abandon(workflow_id)
        why = f"died of signal {-code}"
    elif code == SETUP_FAILED_STATUS:
        why = "could not run the workflow"
    else:
        await _abandon(workflow_id)
        why = f"exited with status {code}"
    raise DBOSException(f"crash_and_recover: the child process {why}; its stderr:\n{_tail(stderr)}")


async def _abandon(workflow_id: str) -> None:
    """Cancel a workflow the child left half-done for a reason other than the crash, so
    this process does not take it over later."""
    with contextlib.suppress(Exception):
        if await DBOS.get_workflow_status(workflow_id) is not None:
            await DBOS.cancel_workflow(workflow_id)


async def _hand_over(rt: Runtime, child_pid: int) -> None:
    """End the dead child's lease and wake this runtime's takeover, so it recovers the
    workflow now rather than at its next periodic look (the lease renewal would also end
    a dead neighbour's lease, up to a third of a lease from now)."""
    here = _host.hostname()
    for executor in await rt.sysdb.list_executors():
        if executor.alive and executor.pid == child_pid and executor.hostname == here:
            await rt.sysdb.end_lease(executor.process_id)
    wake = rt.notifier.hooks.get("run")
    if wake is not None:
        wake(None)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 40) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"
