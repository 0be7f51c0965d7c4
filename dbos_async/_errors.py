"""The exceptions dbos_async raises.

Every error the runtime raises on purpose derives from one root, except cancellation:

    DBOSException
    ├── DBOSNonExistentWorkflowError        no workflow has this ID
    ├── DBOSConflictingWorkflowError        an ID already used by another workflow function
    ├── DBOSUnexpectedStepError             replay found another step at this ID (determinism)
    ├── DBOSPatchNondeterminismError        a patch marker's step slot holds another step
    ├── DBOSMaxStepRetriesExceeded          a retried step failed on every attempt
    ├── DBOSAwaitedWorkflowCancelledError   the awaited workflow was cancelled
    ├── DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded
    ├── DBOSQueueDeduplicatedError          a deduplication ID is already active on a queue
    ├── DBOSQueueNotFoundError              a client named a queue no process declared
    ├── DBOSWorkflowFunctionNotFoundError   no registered function has this workflow's name
    ├── DBOSSerializationError              a value cannot be stored
    ├── DBOSWorkflowError                   a recorded error whose type cannot be rebuilt
    ├── DBOSConfigError                     bad configuration or decorator arguments
    └── DBOSConnectionError                 the database cannot be reached

    BaseException
    └── DBOSWorkflowCancelledError          raised inside a cancelled workflow; an
                                            ``except Exception`` cannot swallow it

Each error keeps its constructor arguments in ``args``, so a recorded error is rebuilt as
its own type when a workflow's outcome is read back.

Errors that DBOS Transact also raises carry its error code in ``dbos_error_code`` (an
``int``, a value of ``DBOSErrorCode``), so code that matches on the codes ports as it is.
"""

from __future__ import annotations

import enum

__all__ = [
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSConfigError",
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
]  # (and WorkflowOwnershipLost and ReplayFailed, internal to the runtime)


class DBOSErrorCode(enum.Enum):
    """DBOS Transact's error codes, with its names and values: ``exc.dbos_error_code ==
    DBOSErrorCode.ConflictingWorkflowError.value``. Codes of DBOS features dbos_async
    does not have are listed too, so matching code imports."""

    ConflictingIDError = 1
    RecoveryError = 2
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 14
    PatchNondeterminism = 15
    StreamTimeout = 16
    StreamNondeterminism = 17
    StepTimeout = 18
    ConflictingRegistrationError = 25


class DBOSException(Exception):
    """Root of every error dbos_async raises (cancellation aside)."""

    #: DBOS Transact's code for this error (a ``DBOSErrorCode`` value), or None.
    dbos_error_code: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


#: What a message's destination is called in ``DBOSNonExistentWorkflowError`` (DBOS
#: Transact's words): ``Non-existent `send` destination workflow ID: <id>``.
SEND_DESTINATION = "`send` destination"


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow with this ID exists. ``destination`` says what the ID was given as
    (``"target"`` for a workflow looked up or operated on, ``"`send` destination"`` for a
    message's destination); the message is DBOS Transact's, ``Non-existent target
    workflow ID: <id>``, and ``str()`` of the error starts with ``DBOS Error 5:`` as
    DBOS Transact's does. For several IDs at once (a bulk send, a bulk resume),
    ``workflow_id`` holds them joined by ``", "``."""

    dbos_error_code = DBOSErrorCode.NonExistentWorkflowError.value

    def __init__(self, workflow_id: str, destination: str = "target") -> None:
        super().__init__(f"Non-existent {destination} workflow ID: {workflow_id}")
        self.args = (workflow_id, destination)
        self.workflow_id = workflow_id
        self.destination = destination

    def __str__(self) -> str:
        return f"DBOS Error {self.dbos_error_code}: {self.message}"


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID is already used by a different workflow function."""

    dbos_error_code = DBOSErrorCode.ConflictingWorkflowError.value

    def __init__(self, workflow_id: str, existing_name: str, requested_name: str) -> None:
        super().__init__(
            f"workflow ID {workflow_id!r} is already used by workflow {existing_name!r}; "
            f"it cannot be reused for {requested_name!r}"
        )
        self.args = (workflow_id, existing_name, requested_name)
        self.workflow_id = workflow_id


class DBOSUnexpectedStepError(DBOSException):
    """Re-execution called a different step than the one recorded at this step ID."""

    dbos_error_code = DBOSErrorCode.UnexpectedStep.value

    def __init__(self, workflow_id: str, step_id: int, expected: str, recorded: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} step {step_id}: the workflow now calls {expected!r} "
            f"but {recorded!r} was recorded there; workflow code must be deterministic"
        )
        self.args = (workflow_id, step_id, expected, recorded)
        self.workflow_id = workflow_id
        self.step_id = step_id


class DBOSPatchNondeterminismError(DBOSException):
    """``DBOS.patch`` could not record its marker deterministically: the step slot it
    took for the marker holds another step, recorded meanwhile by another run of the
    workflow; or ``DBOS.patch`` / ``DBOS.deprecate_patch`` was called concurrently, from
    a task the workflow started rather than its own code, where the slot it decides on
    depends on task scheduling. The workflow's code, or how it is run, is not
    deterministic."""

    dbos_error_code = DBOSErrorCode.PatchNondeterminism.value

    def __init__(self, workflow_id: str, patch_name: str, details: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r}: cannot apply patch {patch_name!r} deterministically: "
            f"{details}; workflow code must be deterministic"
        )
        self.args = (workflow_id, patch_name, details)
        self.workflow_id = workflow_id
        self.patch_name = patch_name


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries failed on every attempt; ``errors`` holds one error per attempt."""

    dbos_error_code = DBOSErrorCode.MaxStepRetriesExceeded.value

    def __init__(self, step_name: str, max_attempts: int, errors: list[BaseException]) -> None:
        last = f": {type(errors[-1]).__name__}: {errors[-1]}" if errors else ""
        super().__init__(f"step {step_name!r} failed {max_attempts} times{last}")
        self.args = (step_name, max_attempts, errors)
        self.step_name = step_name
        self.max_attempts = max_attempts
        self.errors = list(errors)


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The awaited workflow was cancelled."""

    dbos_error_code = DBOSErrorCode.AwaitedWorkflowCancelled.value

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} was cancelled")
        self.args = (workflow_id,)
        self.workflow_id = workflow_id


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSException):
    """The awaited workflow was recovered too many times and was dead-lettered."""

    dbos_error_code = DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded.value

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} exceeded its maximum recovery attempts and is now "
            "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
        )
        self.args = (workflow_id,)
        self.workflow_id = workflow_id


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with this deduplication ID is already active on the queue."""

    dbos_error_code = DBOSErrorCode.QueueDeduplicated.value

    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        # (DBOS Transact's text, which code moving from it may match on.)
        super().__init__(
            f"Workflow {workflow_id} was deduplicated due to an existing workflow in queue "
            f"{queue_name} with deduplication ID {deduplication_id}."
        )
        self.args = (workflow_id, queue_name, deduplication_id)
        self.workflow_id = workflow_id


class DBOSQueueNotFoundError(DBOSException):
    """A client named a queue that no launched process has declared."""


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """No registered workflow function has the name a stored workflow was run under (or,
    for a method, no registered class or instance has the name stored with it)."""

    dbos_error_code = DBOSErrorCode.WorkflowFunctionNotFound.value

    def __init__(self, workflow_id: str, name: str, reason: str | None = None) -> None:
        super().__init__(
            f"workflow {workflow_id!r} was started as {name!r}, but "
            + (reason or "no workflow function with that name is registered in this process")
        )
        self.args = (workflow_id, name) if reason is None else (workflow_id, name, reason)
        self.workflow_id = workflow_id


class DBOSSerializationError(DBOSException):
    """A value (argument, output, message) cannot be serialized or deserialized."""


class DBOSWorkflowError(DBOSException):
    """A recorded error whose original type cannot be rebuilt in this process."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.args = (type_name, message)
        self.type_name = type_name
        self.original_message = message


class DBOSConfigError(DBOSException):
    """Bad configuration: a malformed URL, an unknown key, an invalid decorator argument."""

    dbos_error_code = DBOSErrorCode.InitializationError.value


class DBOSConnectionError(DBOSException):
    """The database could not be reached within the configured connect timeout."""


class DBOSWorkflowCancelledError(BaseException):
    """Raised inside a workflow that was cancelled.

    It derives from ``BaseException`` so an ``except Exception`` in user code cannot
    swallow it.
    """

    dbos_error_code = DBOSErrorCode.WorkflowCancelled.value

    def __init__(self, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self.workflow_id = workflow_id

    def __str__(self) -> str:
        return f"workflow {self.workflow_id!r} was cancelled"


class WorkflowOwnershipLost(BaseException):
    """Raised inside a workflow run whose process no longer owns the workflow: another
    process took it over (this one was paused, or cut off from the database, past its
    lease) or an operator handed it elsewhere. The write that found it out committed
    nothing; the run stops, records nothing more, and the new owner's run is the one that
    counts.

    Internal to the runtime; it derives from ``BaseException`` so an ``except Exception``
    in user code cannot swallow it and carry on."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self.workflow_id = workflow_id

    def __str__(self) -> str:
        return (
            f"workflow {self.workflow_id!r} is no longer owned by this process "
            "(another process took it over)"
        )


class DeferredRowFailed(Exception):
    """Raised to a workflow's run when its outcome is refused because the row of one of
    its steps failed to commit (an error that is not transient, ``error``): the step's
    outcome reached the workflow before its row committed (rule 1 of
    docs/architecture.md), so the workflow's outcome would stand on a step with no row.
    The run records ``error`` as the workflow's error instead, as it would have been had
    the step waited for its row.

    Internal to the runtime."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class ReplayFailed(BaseException):
    """Raised inside a workflow run that cannot read back a step an earlier run recorded
    (its stored value does not decode: written with another encryption key or
    serializer, or as a type this code no longer has). Replaying it differently would
    take the workflow down another path than the run that recorded it, so the run stops
    here, records nothing, and the workflow stays PENDING, to be recovered by a process
    that can read it.

    Internal to the runtime; it derives from ``BaseException`` so an ``except Exception``
    in user code cannot swallow it and carry on. ``error`` is the decoding error."""

    def __init__(self, workflow_id: str, step_id: int, error: Exception) -> None:
        super().__init__(workflow_id, step_id, error)
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.error = error

    def __str__(self) -> str:
        return f"workflow {self.workflow_id!r} cannot replay its step {self.step_id}: {self.error}"
