"""``DBOS.patch`` and ``DBOS.deprecate_patch``: changing a workflow's code while
executions recorded by the old code are still to be recovered (DBOS Transact's
meaning).

``if await DBOS.patch("name"):`` guards the new code. The decision is the step slot
after the workflow's last step, read at call time (so ``asyncio.gather`` cannot reorder
it), from the steps recorded by earlier runs:

- empty (a new execution, or an old one that had not got this far): the patch applies;
  a marker step ``DBOS.patch-<name>`` is recorded in the slot, and the answer is True;
- the marker: a run that took the patch before; True, the marker's slot is passed;
- another step: an execution recorded before the patch existed; False, and the slot is
  left to that step, which the old branch calls next.

Once no execution from before the patch is left, ``DBOS.deprecate_patch("name")``
replaces the ``if``: it returns True, passes the marker of an execution that recorded
one, and records nothing; when no marker is left either, it can be deleted.

The slot order is fixed only for code that runs in sequence, so a patch must be called
from the workflow's own task. Called from a task the workflow started (the coroutines of
an ``asyncio.gather``, ``asyncio.create_task``, a ``TaskGroup``), the slot it would take
depends on how the event loop interleaves that task with the others:
``DBOSPatchNondeterminismError`` ("called concurrently"), at every call, whatever the
scheduling. (``asyncio.gather(step(), DBOS.patch(name))`` is fine: the patch is called,
and decided, in the workflow's own code.)

Patching needs ``enable_patching`` in the configuration (which, unless an application
version is given, makes every build's version ``"PATCHING_ENABLED"``, so a patched build
recovers what an older one left).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ._checkpoint import Checkpoint
from ._context import WorkflowState, current_step, current_workflow
from ._errors import DBOSException, DBOSPatchNondeterminismError
from ._failpoints import CRASH_AFTER, step_durable
from ._ids import check_text
from ._runtime import Runtime, get_runtime

__all__ = ["PATCH_PREFIX", "deprecate_patch", "patch"]

#: The name of a patch's marker step is this followed by the patch's name.
PATCH_PREFIX = "DBOS.patch-"


def _workflow(call: str, patch_name: str) -> tuple[WorkflowState, Runtime]:
    check_text(patch_name, "patch_name", non_empty=True)
    rt = get_runtime()
    if not rt.settings.enable_patching:
        raise DBOSException(f"{call}() needs enable_patching=True in the DBOS configuration")
    state = current_workflow.get()
    if state is None or current_step.get() is not None:
        raise DBOSException(
            f"{call}() must be called from a workflow's own code (not outside workflows, "
            "nor inside a step or transaction)"
        )
    run = rt.live.get(state.workflow_id)
    if run is not None and run.state is state and asyncio.current_task() is not run.task:
        raise DBOSPatchNondeterminismError(
            state.workflow_id,
            patch_name,
            f"{call}() was called concurrently with the workflow's other code, from a task "
            "it started (asyncio.gather of coroutines, create_task, a TaskGroup), so the "
            "step slot it decides on would depend on task scheduling; call it from the "
            "workflow's own sequential code",
        )
    return state, rt


async def _answer(value: bool) -> bool:
    return value


def patch(patch_name: str) -> Coroutine[Any, Any, bool]:
    """Whether this execution takes the patched code path (see the module docstring). The
    step slot is decided now, at the call; awaiting records the marker when one is due."""
    state, rt = _workflow("DBOS.patch", patch_name)
    marker = PATCH_PREFIX + patch_name
    recorded = state.recorded.get(state.next_step_id + 1)
    if recorded is not None and recorded.function_name != marker:
        return _answer(False)  # recorded before the patch: its slot is the old code's
    checkpoint = Checkpoint(state, state.take_step_id(), marker)
    if recorded is not None:
        return _answer(True)
    return checkpoint.traced(lambda: _record_marker(rt, checkpoint, patch_name))


async def _record_marker(rt: Runtime, checkpoint: Checkpoint, patch_name: str) -> bool:
    row = checkpoint.row()
    stored = await rt.journal.record_step(row)
    if stored is row:
        if CRASH_AFTER:
            step_durable(row.workflow_id, row.function_id)
        return True
    checkpoint.adopt(stored)  # another run of this workflow recorded the slot first
    if stored.function_name == checkpoint.name:
        return True
    raise DBOSPatchNondeterminismError(
        checkpoint.state.workflow_id,
        patch_name,
        f"its step {checkpoint.step_id} was recorded meanwhile as {stored.function_name!r} "
        "by another run of the workflow",
    )


def deprecate_patch(patch_name: str) -> Coroutine[Any, Any, bool]:
    """True; an execution that recorded the patch's marker passes it (decided now, at
    the call), and no marker is recorded."""
    state, _ = _workflow("DBOS.deprecate_patch", patch_name)
    recorded = state.recorded.get(state.next_step_id + 1)
    if recorded is not None and recorded.function_name == PATCH_PREFIX + patch_name:
        state.take_step_id()
    return _answer(True)
