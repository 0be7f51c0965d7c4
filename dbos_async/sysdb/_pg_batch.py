"""Postgres: the journal's checkpoint batches, each in one statement.

A batch of one write runs that write's own statement; a step followed by a finish (the
last batch of a workflow run alone: its last step row commits with its outcome) runs
``record_step_and_finish``, the two in one statement with plain parameters; any other
batch runs ``write_batch``, one statement for every insert, step and finish of the batch
(arrays, one per column).
A write that finds a row already there reads what is stored, and ``_results`` decides
whether it is this write's own (after a retry) or another writer's.

Step and finish writes are fenced on the workflow's owner: only a workflow that ``owner``
(this process) owns gets them. One that was taken over answers ``Fenced``, and the rest
of the batch commits as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ._columns import (
    STEP_FIELDS,
    WORKFLOW_FIELDS,
    step_params,
    step_row,
    step_row_or_none,
    workflow_params,
    workflow_row,
    workflow_row_or_none,
)
from ._queries import load_queries
from ._results import finish_result, insert_result, step_result
from ._rows import (
    Fenced,
    FinishWorkflow,
    InsertWorkflow,
    RecordStep,
    StepRow,
    WorkflowRow,
    Write,
    WriteResult,
)

if TYPE_CHECKING:
    from ._pg_pool import Conn

__all__ = ["write_batch"]

Q = load_queries("postgres")

_FINISH_FIELDS = ("workflow_id", "status", "output", "error", "updated_at")
_finish_values = attrgetter(*_FINISH_FIELDS)


async def write_batch(
    conn: Conn, writes: Sequence[Write], retry: bool, owner: str | None
) -> list[WriteResult]:
    """Commit ``writes`` in one statement (``SystemDatabase.write_batch``'s contract), the
    steps and finishes only for workflows ``owner`` owns."""
    if len(writes) == 1:
        return [await _write_one(conn, writes[0], retry, owner)]
    if len(writes) == 2:
        step, finish = writes
        if isinstance(step, RecordStep) and isinstance(finish, FinishWorkflow):
            return await _write_step_and_finish(conn, step.step, finish, retry, owner)
    return await _write_many(conn, writes, retry, owner)


async def _write_one(conn: Conn, write: Write, retry: bool, owner: str | None) -> WriteResult:
    if isinstance(write, InsertWorkflow):
        row = write.row
        inserted = await conn.fetchval(Q["insert_workflow"], *workflow_params(row))
        if inserted is not None:
            return None
        r = await conn.fetchrow(Q["get_workflow"], row.workflow_id)
        return insert_result(row, workflow_row_or_none(r), retry)
    if isinstance(write, RecordStep):
        step = write.step
        inserted = await conn.fetchval(Q["insert_step"], *step_params(step), owner)
        return step if inserted is not None else await _step_not_inserted(conn, step, owner)
    updated = await conn.fetchval(Q["finish_workflow"], *_finish_values(write), owner)
    return True if updated == 1 else await _not_finished(conn, write, retry, owner)


async def _write_step_and_finish(
    conn: Conn, step: StepRow, finish: FinishWorkflow, retry: bool, owner: str | None
) -> list[WriteResult]:
    r = await conn.fetchrow(
        Q["record_step_and_finish"], *step_params(step), *_finish_values(finish), owner
    )
    assert r is not None
    return [
        step if r[0] == 1 else await _step_not_inserted(conn, step, owner),
        True if r[1] == 1 else await _not_finished(conn, finish, retry, owner),
    ]


async def _step_not_inserted(conn: Conn, step: StepRow, owner: str | None) -> StepRow | Fenced:
    """What a step that was not inserted gets: ``Fenced`` if this process does not own
    its workflow, else the row stored at its ID."""
    if await conn.fetch(Q["not_owned"], [step.workflow_id], owner):
        return Fenced(step.workflow_id)
    r = await conn.fetchrow(Q["get_step"], step.workflow_id, step.function_id)
    return _step_result(step, step_row_or_none(r))


async def _not_finished(
    conn: Conn, write: FinishWorkflow, retry: bool, owner: str | None
) -> bool | Fenced:
    r = await conn.fetchrow(Q["get_workflow"], write.workflow_id)
    return finish_result(write, workflow_row_or_none(r), retry, owner)


def _step_result(step: StepRow, stored: StepRow | None) -> StepRow | Fenced:
    """A step not inserted though its workflow is ours (now): the row stored at its ID.
    With none, the insert was fenced: ownership went away and came back between the
    insert and this read (these are separate statements)."""
    return Fenced(step.workflow_id) if stored is None else step_result(step, stored)


def _by_column(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


def _arrays(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows of ``width`` values as ``width`` arrays, one per column, for ``unnest``.

    A column of NULLs only is bound as an empty array: ``unnest`` of several arrays pads
    the shorter ones with NULLs (documented Postgres behaviour), so the rows are the
    same, and the driver neither checks nor encodes every None (in a batch of fresh
    workflows about half the columns are NULL)."""
    columns = [list(c) for c in zip(*rows, strict=True)]
    if not columns:
        return [[] for _ in range(width)]
    return [[] if c.count(None) == len(c) else c for c in columns]


async def _write_many(
    conn: Conn, writes: Sequence[Write], retry: bool, owner: str | None
) -> list[WriteResult]:
    inserts: list[WorkflowRow] = []
    steps: list[StepRow] = []
    finishes: list[FinishWorkflow] = []
    for w in writes:
        if isinstance(w, RecordStep):
            steps.append(w.step)
        elif isinstance(w, InsertWorkflow):
            inserts.append(w.row)
        else:
            finishes.append(w)
    done = await conn.fetch(
        Q["write_batch"],
        *_arrays(map(workflow_params, inserts), len(WORKFLOW_FIELDS)),
        *_arrays(map(step_params, steps), len(STEP_FIELDS)),
        *_arrays(map(_finish_values, finishes), len(_FINISH_FIELDS)),
        owner,
    )
    kinds = [r[0] for r in done]
    if (
        kinds.count(2) == len(steps)
        and kinds.count(1) == len(inserts)
        and kinds.count(3) == len(finishes)
    ):
        # Every write was done (the usual case). Each row back is one write of the batch
        # done (a write of a key repeated in the batch is done once at most), so equal
        # counts say so without matching keys.
        return [
            w.step if isinstance(w, RecordStep) else None if isinstance(w, InsertWorkflow) else True
            for w in writes
        ]
    inserted = {r[1] for r in done if r[0] == 1}
    recorded = {(r[1], r[2]) for r in done if r[0] == 2}
    finished = {r[1] for r in done if r[0] == 3}

    # Rows that were there already (rare): read what is stored.
    clashing = [r.workflow_id for r in inserts if r.workflow_id not in inserted]
    clashing += [f.workflow_id for f in finishes if f.workflow_id not in finished]
    stored_rows: dict[str, WorkflowRow] = {}
    if clashing:
        for r in await conn.fetch(Q["get_workflows"], clashing):
            stored_rows[r[0]] = workflow_row(r)
    missing = [s for s in steps if (s.workflow_id, s.function_id) not in recorded]
    stored_steps: dict[tuple[str, int], StepRow] = {}
    fenced: set[str] = set()
    if missing:
        keys = _by_column(missing, ("workflow_id", "function_id"))
        for r in await conn.fetch(Q["get_steps"], *keys):
            stored_steps[(r[0], r[1])] = step_row(r)
        fenced = {r[0] for r in await conn.fetch(Q["not_owned"], keys[0], owner)}

    results: list[WriteResult] = []
    for w in writes:
        if isinstance(w, InsertWorkflow):
            wid = w.row.workflow_id
            results.append(
                None if wid in inserted else insert_result(w.row, stored_rows.get(wid), retry)
            )
        elif isinstance(w, RecordStep):
            key = (w.step.workflow_id, w.step.function_id)
            if key in recorded:
                results.append(w.step)
            elif key[0] in fenced:
                results.append(Fenced(key[0]))
            else:
                results.append(_step_result(w.step, stored_steps.get(key)))
        elif w.workflow_id in finished:
            results.append(True)
        else:
            results.append(finish_result(w, stored_rows.get(w.workflow_id), retry, owner))
    return results
