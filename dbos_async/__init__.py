"""dbos_async: durable workflows, steps and transactions on asyncio.

Workflows are ``async def`` functions whose steps are checkpointed in Postgres or SQLite;
after a crash they resume where they stopped, never re-running a finished step.
"""

from ._classes import DBOSConfiguredInstance
from ._config import DBOSConfig
from ._context import SetWorkflowID, SetWorkflowTimeout
from ._dbos import DBOS
from ._debouncer import Debouncer
from ._debouncer_client import DebouncerClient
from ._errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConfigError,
    DBOSConflictingWorkflowError,
    DBOSConnectionError,
    DBOSErrorCode,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSPatchNondeterminismError,
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowError,
    DBOSWorkflowFunctionNotFoundError,
)
from ._handle import WorkflowHandle, WorkflowHandleAsync
from ._loop import run
from ._queue import Queue, SetEnqueueOptions
from ._schedules import WorkflowSchedule
from ._send_bulk import SendMessage
from ._status import ExecutorInfo, StepInfo, StepStatus, WorkflowStatus, WorkflowStatusString
from ._versions import VersionInfo
from .client import DBOSClient, EnqueueOptions

__all__ = [
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfigError",
    "DBOSConfiguredInstance",
    "DBOSConflictingWorkflowError",
    "DBOSConnectionError",
    "DBOSErrorCode",
    "DBOSException",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSPatchNondeterminismError",
    "DBOSQueueDeduplicatedError",
    "DBOSQueueNotFoundError",
    "DBOSSerializationError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowError",
    "DBOSWorkflowFunctionNotFoundError",
    "Debouncer",
    "DebouncerClient",
    "EnqueueOptions",
    "ExecutorInfo",
    "Queue",
    "SendMessage",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepStatus",
    "VersionInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowSchedule",
    "WorkflowStatus",
    "WorkflowStatusString",
    "run",
]
