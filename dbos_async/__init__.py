"""dbos_async: durable workflows, steps and transactions on asyncio.

Workflows are ``async def`` functions whose steps are checkpointed in Postgres or SQLite;
after a crash they resume where they stopped, never re-running a finished step.
"""

from ._config import DBOSConfig
from ._context import SetWorkflowID, SetWorkflowTimeout
from ._dbos import DBOS
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
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowError,
    DBOSWorkflowFunctionNotFoundError,
)
from ._handle import WorkflowHandle
from ._loop import run
from ._queue import Queue, SetEnqueueOptions
from ._send_bulk import SendMessage
from ._status import ExecutorInfo, StepInfo, StepStatus, WorkflowStatus, WorkflowStatusString
from .client import DBOSClient

__all__ = [
    "DBOS",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfigError",
    "DBOSConflictingWorkflowError",
    "DBOSConnectionError",
    "DBOSErrorCode",
    "DBOSException",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSQueueDeduplicatedError",
    "DBOSQueueNotFoundError",
    "DBOSSerializationError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowError",
    "DBOSWorkflowFunctionNotFoundError",
    "ExecutorInfo",
    "Queue",
    "SendMessage",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepStatus",
    "WorkflowHandle",
    "WorkflowStatus",
    "WorkflowStatusString",
    "run",
]
