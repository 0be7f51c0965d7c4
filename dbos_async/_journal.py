"""The step journal: group commit of checkpoint writes.

Every checkpoint write of every workflow running in this process (status inserts, step
outputs, final status updates) goes through one journal. A single writer task takes all
writes pending at that moment and commits them in one batch: one round trip, one commit.
A lone write under no load goes out at once, with no timer; under load, the writes that
arrive while a batch is committing form the next batch.

The ordering rule (rule 1 of docs/architecture.md, "Durable before anything outside sees
it"):

- a write's caller is resumed only after the batch holding it has committed. The one
  exception is ``defer_step``: a step or transaction row handed over without waiting, so
  the workflow goes on while it commits; its workflow awaits it before its next effect
  (rule 1 of docs/architecture.md, ``Checkpoint.defer``);
- batches commit one after another in the order their writes arrived, and a workflow's
  own writes are never reordered (a workflow has at most its deferred rows pending when
  it writes, and they arrived first);
- if a batch fails, its writes are retried one by one, so only the write that caused the
  failure fails (its caller gets the error) and the others commit; a workflow whose
  deferred step row failed has its outcome refused (``DeferredRowFailed``), so it is
  never recorded as if that step had its row. Writes are keyed and idempotent, so
  retrying a batch whose outcome was unknown converges;
- a step or outcome of a workflow this process no longer owns is not written (fencing:
  see ``sysdb``); its caller gets ``WorkflowOwnershipLost`` and the rest commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from ._errors import DeferredRowFailed, WorkflowOwnershipLost
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
    if isinstance(write, RecordStep):  # (the most frequent first)
        return ("step", write.step.workflow_id, write.step.function_id)
    if isinstance(write, InsertWorkflow):
        return ("workflow", write.row.workflow_id)
    return ("finish", write.workflow_id)


class Journal:
    """Batches checkpoint writes from all workflows into shared commits."""

    def __init__(self, sysdb: SystemDatabase, max_batch: int = 2000) -> None:
        self._sysdb = sysdb
        self._max_batch = max_batch
        self._pending: list[_Entry] = []
        self._wake = asyncio.Event()
        #: The error of each workflow's deferred step row that failed, until its outcome comes
        #: (``_refuse_outcomes``). A row fails only on an error that is not transient.
        self._failed_rows: dict[str, Exception] = {}
        #: The futures of deferred step rows not yet settled (each leaves once settled).
        self._deferred: set[asyncio.Future[WriteResult]] = set()
        #: Set while nothing is pending or committing.
        self._drained = asyncio.Event()
        self._drained.set()
        self._writer: asyncio.Task[None] | None = None
        #: Batches committed and writes in them, for tests and benchmarks.
        self.batches = 0
        self.writes = 0

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Commit the writes still pending (for up to ``drain_seconds``: a database that
        does not answer must not hold a shutdown), then stop the writer. Their workflows
        have stopped, but what they recorded counts: most often a step row deferred just
        before the stop (``defer_step``). Writes still pending after that are dropped
        unanswered; recovery redoes any step whose row was not committed."""
        if self._writer is not None and not self._drained.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await self._drained.wait()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._deferred.clear()

    # The three writes return the write's future itself, not a coroutine awaiting it: a
    # step's resume after its commit then passes through two frames fewer.

    def insert_workflow(self, row: WorkflowRow) -> asyncio.Future[WorkflowRow | None]:
        return cast("asyncio.Future[WorkflowRow | None]", self._submit(InsertWorkflow(row)))

    def record_step(self, step: StepRow) -> asyncio.Future[StepRow]:
        return cast("asyncio.Future[StepRow]", self._submit(RecordStep(step)))

    def finish_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None, now_ms: int
    ) -> asyncio.Future[bool]:
        write = FinishWorkflow(workflow_id, status, output, error, now_ms)
        return cast("asyncio.Future[bool]", self._submit(write))

    def defer_step(self, step: StepRow) -> asyncio.Future[WriteResult]:
        """Queue a step row without waiting for it: the future is settled once its batch
        has committed (with the row that counts, ``step`` itself or the one recorded at
        its ID first) or with its error. The caller must await it before anything of its
        workflow is seen outside the workflow (``Checkpoint.defer``)."""
        future = self._submit(RecordStep(step))
        self._deferred.add(future)
        return future

    def _submit(self, write: Write) -> asyncio.Future[WriteResult]:
        if self._writer is None:
            raise RuntimeError("the journal is not running")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if not self._wake.is_set():
            self._wake.set()
        self._drained.clear()
        # A cancelled caller cancels only its future; the write itself still goes out.
        return future

    def _refuse_outcomes(self, batch: list[_Entry]) -> list[_Entry]:
        """The batch without the outcomes of workflows a step row of which failed: such
        an outcome is refused with ``DeferredRowFailed`` (the workflow went on from a step
        whose row never committed; see ``_runner``), the others go on."""
        kept: list[_Entry] = []
        for write, future in batch:
            error = (
                self._failed_rows.pop(write.workflow_id, None)
                if isinstance(write, FinishWorkflow)
                else None
            )
            if error is None:
                kept.append((write, future))
            else:
                _settle(future, error=DeferredRowFailed(error))
        return kept

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
            self._drained.set()

    async def _flush(self, batch: list[_Entry], retry: bool = False) -> None:
        if self._failed_rows:
            batch = self._refuse_outcomes(batch)
            if not batch:
                return
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
                write, future = batch[0]
                if future in self._deferred:
                    self._deferred.discard(future)
                    assert isinstance(write, RecordStep)
                    self._failed_rows[write.step.workflow_id] = exc
                _settle(future, error=exc)
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
        deferred = self._deferred
        for (_, future), result in zip(batch, results, strict=True):
            if deferred:
                deferred.discard(future)
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
