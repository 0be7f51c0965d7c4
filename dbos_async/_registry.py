"""The registry of decorated functions, by name. It outlives any DBOS instance: decorators
run at import time, before the runtime exists, and recovery finds functions here by the
name stored with each workflow."""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ._errors import DBOSConfigError

__all__ = [
    "ISOLATION_LEVELS",
    "FunctionInfo",
    "FunctionOptions",
    "Registry",
    "StepOptions",
    "TransactionOptions",
    "WorkflowOptions",
    "registry",
]

ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")

OptionsT = TypeVar("OptionsT", bound="FunctionOptions")


def _set(options: object, name: str, value: object) -> None:
    object.__setattr__(options, name, value)  # normalizing a frozen dataclass


@dataclass(frozen=True, slots=True)
class WorkflowOptions:
    """``@DBOS.workflow(...)``: how many times recovery may restart it before it is
    marked MAX_RECOVERY_ATTEMPTS_EXCEEDED."""

    kind: ClassVar[str] = "workflow"
    max_recovery_attempts: int = 100

    def __post_init__(self) -> None:
        attempts = self.max_recovery_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise DBOSConfigError(
                "@DBOS.workflow(max_recovery_attempts=...) must be a non-negative integer, "
                f"got {attempts!r}"
            )


@dataclass(frozen=True, slots=True)
class StepOptions:
    """``@DBOS.step(...)``: with ``retries_allowed``, up to ``max_attempts`` attempts,
    the n-th retry after ``interval_seconds * backoff_rate ** (n - 1)`` seconds."""

    kind: ClassVar[str] = "step"
    retries_allowed: bool = False
    max_attempts: int = 3
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    #: Cancelled mid-body when its workflow is cancelled, instead of finishing first.
    preemptible: bool = False

    def __post_init__(self) -> None:
        attempts, interval, rate = self.max_attempts, self.interval_seconds, self.backoff_rate
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise DBOSConfigError(f"@DBOS.step(max_attempts=...) must be >= 1, got {attempts!r}")
        if not isinstance(interval, (int, float)) or interval < 0:
            raise DBOSConfigError(
                f"@DBOS.step(interval_seconds=...) must be >= 0, got {interval!r}"
            )
        if not isinstance(rate, (int, float)) or rate <= 0:
            raise DBOSConfigError(f"@DBOS.step(backoff_rate=...) must be > 0, got {rate!r}")
        _set(self, "retries_allowed", bool(self.retries_allowed))
        _set(self, "preemptible", bool(self.preemptible))
        _set(self, "interval_seconds", float(interval))
        _set(self, "backoff_rate", float(rate))


@dataclass(frozen=True, slots=True)
class TransactionOptions:
    """``@DBOS.transaction(...)``: the isolation level, one of ``ISOLATION_LEVELS`` (any
    case; stored upper-case)."""

    kind: ClassVar[str] = "transaction"
    isolation_level: str = "SERIALIZABLE"

    def __post_init__(self) -> None:
        given = self.isolation_level
        level = given.upper() if isinstance(given, str) else given
        if level not in ISOLATION_LEVELS:
            raise DBOSConfigError(
                "@DBOS.transaction(isolation_level=...) must be one of "
                f"{', '.join(ISOLATION_LEVELS)}; got {given!r}"
            )
        _set(self, "isolation_level", level)


FunctionOptions = WorkflowOptions | StepOptions | TransactionOptions


@dataclass
class FunctionInfo:
    """A decorated workflow, step or transaction and what the runtime needs of it."""

    name: str
    func: Callable[..., Any]
    signature: inspect.Signature
    is_async: bool
    options: FunctionOptions
    _hints: dict[str, Any] | None = field(default=None, repr=False)
    #: What it is in a ``@DBOS.dbos_class()`` class (set by that decorator):
    #: ``"instance"``, ``"class"`` or ``"static"`` method; None for a plain function (or
    #: a method of a class without the decorator).
    method: str | None = None

    @property
    def kind(self) -> str:
        """``"workflow"``, ``"step"`` or ``"transaction"``, after its options."""
        return self.options.kind

    @property
    def workflow_options(self) -> WorkflowOptions:
        return self._options(WorkflowOptions)

    @property
    def step_options(self) -> StepOptions:
        options = self.options
        if type(options) is StepOptions:  # (read twice per step call: no _options call)
            return options
        return self._options(StepOptions)

    @property
    def transaction_options(self) -> TransactionOptions:
        return self._options(TransactionOptions)

    def _options(self, kind: type[OptionsT]) -> OptionsT:
        options = self.options
        if not isinstance(options, kind):
            raise TypeError(f"{self.name!r} is a {self.kind}, not a {kind.kind}")
        return options

    @property
    def receives(self) -> bool:
        """Whether its first argument is an instance or class (``self``, ``cls``), which
        is not stored with its inputs but found again by name (``_classes``)."""
        return self.method in ("instance", "class")

    @property
    def stored_signature(self) -> inspect.Signature:
        """The parameters whose values are stored as its inputs: without the receiver
        (``self``, ``cls``) of an instance or class method."""
        if not self.receives:
            return self.signature
        return self.signature.replace(parameters=list(self.signature.parameters.values())[1:])

    @property
    def hints(self) -> dict[str, Any]:
        """The resolved annotations. Resolved on first use, not at decoration, so a model
        defined after the function (a forward reference) is found; not cached until
        every name resolves."""
        if self._hints is None:
            try:
                self._hints = typing.get_type_hints(self.func)
            except Exception:
                return {}
        return self._hints

    @property
    def return_hint(self) -> Any:
        hints = self._hints if self._hints is not None else self.hints
        return hints.get("return", Any)

    @property
    def origin(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


def describe(name: str, func: Callable[..., Any], options: FunctionOptions) -> FunctionInfo:
    return FunctionInfo(
        name=name,
        func=func,
        signature=inspect.signature(func),
        is_async=inspect.iscoroutinefunction(func),
        options=options,
    )


class Registry:
    def __init__(self) -> None:
        self.workflows: dict[str, FunctionInfo] = {}
        #: Declared queues (``Queue`` objects) and scheduled workflows, by name.
        self.queues: dict[str, Any] = {}
        self.schedules: dict[str, Any] = {}
        #: Called with each queue declared (the queue workers of a launched runtime).
        self.queue_listeners: list[Callable[[Any], None]] = []
        #: ``@DBOS.dbos_class()`` classes by registered name, and their named instances
        #: (``DBOSConfiguredInstance``) by (class name, config name): a recovered method
        #: workflow runs on the one its row names (``_classes``).
        self.classes: dict[str, type] = {}
        self.instances: dict[tuple[str, str], object] = {}
        #: The names of the library's own workflows and queues (the debouncer's): ``clear``
        #: keeps them, as their modules register them only once, at import.
        self.builtin_workflows: set[str] = set()
        self.builtin_queues: set[str] = set()

    def declare_queue(self, queue: Any) -> None:
        """Register a ``Queue`` under its name and tell the listeners."""
        self.queues[queue.name] = queue
        for listener in list(self.queue_listeners):
            listener(queue)

    def add_workflow(self, info: FunctionInfo) -> None:
        existing = self.workflows.get(info.name)
        if existing is not None and existing.origin != info.origin:
            raise DBOSConfigError(
                f"workflow name {info.name!r} is already registered by {existing.origin}; "
                f"give {info.origin} another name with @DBOS.workflow(name=...)"
            )
        # The same function defined again (a reloaded module, a test run twice) replaces it.
        self.workflows[info.name] = info

    def clear(self) -> None:
        """Forget the application's workflows, queues and schedules (not the library's
        own: ``builtin_workflows``, ``builtin_queues``)."""
        for table, keep in (
            (self.workflows, self.builtin_workflows),
            (self.queues, self.builtin_queues),
        ):
            for name in [n for n in table if n not in keep]:
                del table[name]
        self.schedules.clear()
        self.classes.clear()
        self.instances.clear()

    def source_hash(self) -> str:
        """A hash of the registered workflows' source: the default application version."""
        digest = hashlib.sha256()
        for name in sorted(self.workflows):
            func = self.workflows[name].func
            digest.update(name.encode())
            try:
                digest.update(inspect.getsource(func).encode())
            except (OSError, TypeError):
                digest.update(func.__code__.co_code if hasattr(func, "__code__") else b"")
        return digest.hexdigest()[:32]


registry = Registry()
