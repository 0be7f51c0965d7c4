"""``DBOS``: the public facade. One instance per process at a time; its methods are
class-level, so ``DBOS.start_workflow(...)`` works anywhere once ``DBOS(config)`` exists."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _decorators
from ._config import DBOSConfig, resolve_config
from ._context import current_sql_connection, current_step, current_workflow
from ._errors import DBOSException, DBOSNonExistentWorkflowError
from ._handle import WorkflowHandle, status_of
from ._registry import registry
from ._runner import recover_pending_workflows, start_workflow
from ._runtime import Runtime, current_runtime, get_runtime, set_runtime
from ._status import StepInfo, WorkflowStatus
from ._steps import durable_sleep

__all__ = ["DBOS"]

P = ParamSpec("P")
R = TypeVar("R")


class _DBOSMeta(type):
    """Class-level properties: ``DBOS.workflow_id``, ``DBOS.step_id``, ``DBOS.sql_connection``."""

    @property
    def workflow_id(cls) -> str | None:
        """The ID of the workflow whose code is running, or None outside workflows."""
        frame = current_step.get()
        if frame is not None and frame.workflow_id is not None:
            return frame.workflow_id
        state = current_workflow.get()
        return state.workflow_id if state is not None else None

    @property
    def step_id(cls) -> int | None:
        """The 1-based ID of the running step or transaction, or None outside one."""
        frame = current_step.get()
        return frame.step_id if frame is not None else None

    @property
    def sql_connection(cls) -> Any:
        """The connection of the running ``@DBOS.transaction`` (asyncpg or aiosqlite)."""
        conn = current_sql_connection.get()
        if conn is None:
            raise DBOSException("DBOS.sql_connection is only available inside a @DBOS.transaction")
        return conn


class DBOS(metaclass=_DBOSMeta):
    """The durable execution runtime. ``DBOS(config)`` creates it, ``await DBOS.launch()``
    connects and recovers, ``await DBOS.destroy()`` stops it; ``async with DBOS(config):``
    does both."""

    def __init__(self, config: DBOSConfig | dict[str, Any] | None = None) -> None:
        existing = current_runtime()
        if existing is not None:
            raise DBOSException(
                "a DBOS instance already exists in this process; await DBOS.destroy() first"
            )
        self._runtime = Runtime(resolve_config(config))
        set_runtime(self._runtime)

    async def __aenter__(self) -> DBOS:
        try:
            await DBOS.launch()
        except BaseException:
            await DBOS.destroy()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await DBOS.destroy()

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    async def launch(cls) -> None:
        """Create or migrate the schema, then recover this executor's PENDING workflows."""
        rt = current_runtime()
        if rt is None:
            raise DBOSException("no DBOS instance: create DBOS(config) before DBOS.launch()")
        if rt.launched:
            return
        await rt.connect()
        if not rt.recovered:
            rt.recovered = True
            await recover_pending_workflows(rt)

    @classmethod
    async def destroy(cls, *, destroy_registry: bool = False) -> None:
        """Stop the runtime: running workflows stay PENDING, to be recovered later.
        The registry of decorated functions survives unless ``destroy_registry``."""
        rt = current_runtime()
        set_runtime(None)
        if rt is not None:
            await rt.close()
        if destroy_registry:
            registry.clear()

    launch_async = launch
    destroy_async = destroy

    # -- decorators --------------------------------------------------------------------

    workflow = staticmethod(_decorators.workflow)
    step = staticmethod(_decorators.step)
    communicator = staticmethod(_decorators.step)
    transaction = staticmethod(_decorators.transaction)

    # -- running workflows -----------------------------------------------------------

    @staticmethod
    def start_workflow(
        func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Start a workflow and return its handle once its status row is durable."""
        info = _decorators.function_info(func)
        if info is None or info.kind != "workflow":
            raise TypeError(
                "DBOS.start_workflow() needs a function decorated with @DBOS.workflow(), "
                f"got {func!r}"
            )
        return start_workflow(info, args, kwargs)

    start_workflow_async = start_workflow

    @staticmethod
    async def retrieve_workflow(
        workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID (it may run in another process)."""
        rt = get_runtime()
        if existing_workflow and await rt.sysdb.get_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(rt, workflow_id)

    retrieve_workflow_async = retrieve_workflow

    @staticmethod
    def sleep(seconds: float) -> Coroutine[Any, Any, None]:
        """Sleep durably inside a workflow (a recovered workflow sleeps only the rest)."""
        return durable_sleep(seconds)

    sleep_async = sleep

    # -- introspection ---------------------------------------------------------------

    @staticmethod
    async def get_workflow_status(workflow_id: str) -> WorkflowStatus | None:
        rt = get_runtime()
        row = await rt.sysdb.get_workflow(workflow_id)
        return status_of(rt, row) if row is not None else None

    get_workflow_status_async = get_workflow_status

    @staticmethod
    async def list_workflow_steps(workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, by step ID."""
        rt = get_runtime()
        codec = rt.codec
        return [
            StepInfo(
                function_id=s.function_id,
                function_name=s.function_name,
                output=codec.loads(s.output),
                error=codec.load_error(s.error) if s.error is not None else None,
                child_workflow_id=s.child_workflow_id,
                started_at_epoch_ms=s.started_at_epoch_ms,
                completed_at_epoch_ms=s.completed_at_epoch_ms,
            )
            for s in await rt.sysdb.load_steps(workflow_id)
        ]

    list_workflow_steps_async = list_workflow_steps
