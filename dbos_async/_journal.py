"""The step journal: group commit of checkpoint writes.

Every checkpoint write of every workflow running in this process (status inserts, step
outputs, final status updates) goes through one journal. A single writer task takes all
writes pending at that moment and commits them in one batch: one round trip, one commit.
A lone write under no load goes out at once, with no timer; under load, the writes that
arrive while a batch is committing form the next batch.

The ordering rule (rule 1 of docs/architecture.md, "Durable before visible"):

- a write's caller is resumed only after the batch holding it has committed, so a step's
  result never reaches its workflow before its row is durable;
- batches commit one after another in the order their writes arrived, and a workflow's
  own writes are never reordered (a workflow awaits each write before its next);
- if a batch fails, its writes are retried one by one, so only the write that caused the
  failure fails (its caller gets the error) and the others commit. Writes are keyed and
  idempotent, so retrying a batch whose outcome was unknown converges;
- a step or outcome of a workflow this process no longer owns is not written (fencing:
  see ``sysdb``); its caller gets ``WorkflowOwnershipLost`` and the rest commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ._errors import WorkflowOwnershipLost
from ._failpoints import ACTIVE as FAILPOINTS
from ._failpoints import hit
from .sysdb import (
    Fenced,
    FinishWorkflow,
    InsertWorkflow,
    RecordStep,
    StepRow,
    SystemDatabase,
    WorkflowRow,
    Write,
    WriteResult,
)

__all__ = ["Journal"]

log = logging.getLogger("dbos_async")

_Entry = tuple[Write, "asyncio.Future[WriteResult]"]


def _key(write: Write) -> tuple[Any, ...]:
    if isinstance(write, InsertWorkflow):
        return ("workflow", write.row.workflow_id)
    if isinstance(write, RecordStep):
        return ("step", write.step.workflow_id, write.step.function_id)
    return ("finish", write.workflow_id)


class Journal:
    """Batches checkpoint writes from all workflows into shared commits."""

    def __init__(self, sysdb: SystemDatabase, max_batch: int = 2000) -> None:
        self._sysdb = sysdb
        self._max_batch = max_batch
        self._pending: list[_Entry] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        #: Batches committed and writes in them, for tests and benchmarks.
        self.batches = 0
        self.writes = 0

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop the writer. Writes still pending are dropped unanswered: their workflows
        are stopping too, and recovery redoes any step whose row was not committed."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    async def insert_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        result = await self._submit(InsertWorkflow(row))
        assert result is None or isinstance(result, WorkflowRow)
        return result

    async def record_step(self, step: StepRow) -> StepRow:
        result = await self._submit(RecordStep(step))
        assert isinstance(result, StepRow)
        return result

    async def finish_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None, now_ms: int
    ) -> bool:
        result = await self._submit(FinishWorkflow(workflow_id, status, output, error, now_ms))
        assert isinstance(result, bool)
        return result

    async def _submit(self, write: Write) -> WriteResult:
        if self._writer is None:
            raise RuntimeError("the journal is not running")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._wake.set()
        # A cancelled caller cancels only its future; the write itself still goes out.
        return await future

    def _take_batch(self) -> list[_Entry]:
        """Up to ``max_batch`` pending writes, in arrival order, no two with one key (a
        repeated key waits for the next batch, behind the first)."""
        batch: list[_Entry] = []
        later: list[_Entry] = []
        keys: set[tuple[Any, ...]] = set()
        for entry in self._pending:
            key = _key(entry[0])
            if len(batch) >= self._max_batch or key in keys:
                later.append(entry)
            else:
                keys.add(key)
                batch.append(entry)
        self._pending = later
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._flush(self._take_batch())

    async def _flush(self, batch: list[_Entry], retry: bool = False) -> None:
        writes = [w for w, _ in batch]
        if FAILPOINTS:
            hit("before_flush")
        try:
            results = await self._sysdb.write_batch(writes, retry=retry)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], error=exc)
                return
            log.debug("a batch of %d writes failed (%r); writing them one by one", len(batch), exc)
            # The failed batch may have committed before failing (its reply lost): the
            # retries say so, and the backends count equal stored rows as these writes.
            for entry in batch:
                await self._flush([entry], retry=True)
            return
        if FAILPOINTS:
            hit("after_flush")
        self.batches += 1
        self.writes += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Fenced):
                # Another process owns the workflow now: nothing of it was written.
                _settle(future, error=WorkflowOwnershipLost(result.workflow_id))
            else:
                _settle(future, result=result)


def _settle(
    future: asyncio.Future[WriteResult],
    result: WriteResult = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
