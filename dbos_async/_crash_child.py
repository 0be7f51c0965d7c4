"""The child process of ``dbos_async.testing.crash_and_recover``.

``python -m dbos_async._crash_child SPEC.json``, with ``DBOS_ASYNC_CRASH_AFTER_STEP`` set
by the parent: imports the workflow's module, launches DBOS with the parent's database
URLs, serializer and application version, and runs the workflow under the ID the parent
chose. The crash hook (``_failpoints``) kills this process with SIGKILL the moment the
named step's checkpoint is durable. If the workflow ends first, this process exits with
``ENDED_STATUS`` (the parent reads the recorded outcome from the database); if it cannot
start the workflow at all, with ``SETUP_FAILED_STATUS`` and a traceback on stderr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import importlib
import json
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._classes import stored_receiver
from ._context import SetWorkflowID
from ._dbos import DBOS
from ._decorators import function_info
from ._registry import FunctionInfo
from ._runtime import get_runtime
from .testing import ENDED_STATUS, SETUP_FAILED_STATUS

__all__ = ["main"]


_PR_SET_PDEATHSIG = 1


class _SetupError(Exception):
    pass


def _load_workflow(spec: dict[str, Any]) -> tuple[Callable[..., Any], FunctionInfo]:
    module_name, qualname = spec["module"], spec["qualname"]
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _SetupError(
            f"cannot import module {module_name!r} of workflow {spec['workflow_name']!r} "
            f"(sys.path: {sys.path}): {type(exc).__name__}: {exc}"
        ) from exc
    for part in qualname.split("."):
        found = getattr(found, part, None)
    found = getattr(found, "__func__", found)  # (a classmethod: its receiver comes below)
    info = function_info(found)
    if info is None or info.name != spec["workflow_name"]:
        raise _SetupError(
            f"{module_name}.{qualname} is not the workflow {spec['workflow_name']!r} once "
            "imported in a new process"
        )
    return found, info


def _serializer(spec: Any) -> Any:
    if isinstance(spec, dict):
        return pickle.loads(base64.b64decode(spec["pickled"]))
    return spec


async def _run(spec: dict[str, Any]) -> None:
    wf, info = _load_workflow(spec)
    config = dict(spec["config"], serializer=_serializer(spec["serializer"]))
    async with DBOS(config):
        rt = get_runtime()
        args, kwargs = rt.codec.load_inputs(spec["inputs"], info.stored_signature, info.hints)
        receiver, missing = stored_receiver(info, spec.get("class_name"), spec.get("config_name"))
        if missing is not None:
            raise _SetupError(f"workflow {spec['workflow_name']!r} cannot run here: {missing}")
        with SetWorkflowID(spec["workflow_id"]):
            handle = await DBOS.start_workflow(wf, *receiver, *args, **kwargs)
        with contextlib.suppress(Exception):  # recorded: the parent reads it there
            await handle.get_result()
        sys.stderr.write(
            f"dbos_async crash child: workflow {spec['workflow_id']} ended before the crash\n"
        )


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the test process: on Linux the kernel sends SIGKILL here when the
    parent dies (a test killed by a timeout, Ctrl-C); elsewhere, and if the parent is
    already gone, exit now."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(SETUP_FAILED_STATUS)


def main(argv: list[str]) -> int:
    """Run the workflow the spec file ``argv[1]`` describes; the exit status for the
    parent (when the crash hook has not killed this process first)."""
    try:
        spec = json.loads(Path(argv[1]).read_text())
        _die_with_parent(int(spec.get("parent_pid", 0)))
        asyncio.run(_run(spec))
    except _SetupError as exc:
        sys.stderr.write(f"dbos_async crash child: {exc}\n")
        return SETUP_FAILED_STATUS
    except BaseException:
        traceback.print_exc()
        return SETUP_FAILED_STATUS
    return ENDED_STATUS


if __name__ == "__main__":
    sys.exit(main(sys.argv))
