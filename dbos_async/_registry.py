"""The registry of decorated functions, by name. It outlives any DBOS instance: decorators
run at import time, before the runtime exists, and recovery finds functions here by the
name stored with each workflow."""

from __future__ import annotations

import hashlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import DBOSConfigError

__all__ = ["FunctionInfo", "Registry", "registry"]


@dataclass
class FunctionInfo:
    """A decorated workflow, step or transaction and what the runtime needs of it."""

    kind: str  # "workflow" | "step" | "transaction"
    name: str
    func: Callable[..., Any]
    signature: inspect.Signature
    is_async: bool
    options: dict[str, Any] = field(default_factory=dict)
    _hints: dict[str, Any] | None = field(default=None, repr=False)

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
        return self.hints.get("return", Any)

    @property
    def origin(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"


def describe(kind: str, name: str, func: Callable[..., Any], **options: Any) -> FunctionInfo:
    return FunctionInfo(
        kind=kind,
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
        self.workflows.clear()
        self.queues.clear()
        self.schedules.clear()

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
