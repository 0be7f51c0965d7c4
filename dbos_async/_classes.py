"""Classes whose methods are workflows, steps or transactions: ``@DBOS.dbos_class()`` and
``DBOSConfiguredInstance``, with DBOS Transact's names and meanings.

A workflow's inputs are stored so that another process can run it again; an instance or
a class cannot be stored, so a method workflow stores names instead. ``@DBOS.dbos_class()``
registers a class under a name (its ``__qualname__`` unless given) and tells its
decorated methods what they are (instance, class or static method). An instance whose
methods are workflows derives from ``DBOSConfiguredInstance``, whose ``config_name``
registers it under (class name, config name). Starting an instance-method workflow
records both names (``class_name``, ``config_name`` on its status row) and stores the
arguments after ``self``; a classmethod workflow records the class name and stores the
arguments after ``cls``; a staticmethod workflow is stored as a plain function. A stored
workflow (recovered, resumed, forked, claimed from a queue) runs on the instance or class
registered here under those names. With none, recovery and takeover leave it PENDING for
a process that has it (or for its registration here); a queue worker that claimed it
records ``DBOSWorkflowFunctionNotFoundError``, as for a missing function, so every
process that listens to a queue must register the instances its workflows run on.

Steps and transactions need none of this: their arguments are not stored, so they may be
methods of any class, decorated or not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ._errors import DBOSConfigError
from ._ids import check_text
from ._registry import FunctionInfo, registry

__all__ = [
    "DBOSConfiguredInstance",
    "Receiver",
    "class_name_of",
    "dbos_class",
    "register_instance",
    "split_receiver",
    "stored_receiver",
    "with_bound_receiver",
]

T = TypeVar("T", bound=type)

#: Set on a ``@DBOS.dbos_class()`` class (inherited by its subclasses): its registered name.
_NAME_ATTR = "__dbos_class_name__"


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def class_name_of(cls: type) -> str:
    """The name a class is stored under: the name it (or the nearest decorated class it
    derives from) was registered with by ``@DBOS.dbos_class()``, else its ``__qualname__``."""
    name = getattr(cls, _NAME_ATTR, None)
    return name if isinstance(name, str) else cls.__qualname__


def _method_kind(attribute: object) -> tuple[str, object] | None:
    """What a class attribute is (instance, class or static method) and its function."""
    if isinstance(attribute, staticmethod):
        return "static", attribute.__func__
    if isinstance(attribute, classmethod):
        return "class", attribute.__func__
    if inspect.isfunction(attribute):
        return "instance", attribute
    return None


def _infos(func: object) -> list[FunctionInfo]:
    """The ``FunctionInfo`` of a decorated function, down its ``__wrapped__`` chain (a
    decorator stacked above ``@DBOS.workflow()`` that keeps ``__wrapped__``)."""
    found: list[FunctionInfo] = []
    seen: set[int] = set()
    while func is not None and id(func) not in seen:
        seen.add(id(func))
        info = getattr(func, "__dbos_info__", None)
        if isinstance(info, FunctionInfo):
            found.append(info)
        func = getattr(func, "__wrapped__", None)
    return found


def dbos_class(class_name: str | None = None) -> Callable[[T], T]:
    """``@DBOS.dbos_class()`` on a class whose methods are decorated workflows, steps or
    transactions: registers the class under ``class_name`` (default: its
    ``__qualname__``), the name stored with its method workflows, and tells each decorated
    method whether it is an instance, class or static method.

    Without it, calling an instance or class method workflow raises ``DBOSConfigError``
    (its ``self`` or ``cls`` could not be found again at recovery). Two different classes
    may not share a registered name (``DBOSConfigError``: give one another
    ``class_name``); the same class defined again (a reloaded module) replaces the first,
    and the instances registered for the first are forgotten.
    """
    if callable(class_name) and not isinstance(class_name, str):
        raise TypeError(
            "use @DBOS.dbos_class() with parentheses: @DBOS.dbos_class was applied to "
            f"{getattr(class_name, '__qualname__', class_name)!r} directly"
        )
    check_text(class_name, "@DBOS.dbos_class(class_name=...)", optional=True, non_empty=True)

    def decorator(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"@DBOS.dbos_class() decorates a class, got {cls!r}")
        name = class_name if class_name is not None else cls.__qualname__
        existing = registry.classes.get(name)
        if existing is not None and existing is not cls:
            if _origin(existing) != _origin(cls):
                raise DBOSConfigError(
                    f"class name {name!r} is already registered by {_origin(existing)}; "
                    f"give {_origin(cls)} another name with @DBOS.dbos_class(class_name=...)"
                )
            # The same class defined again: its instances were of the old definition.
            for key in [k for k, v in registry.instances.items() if k[0] == name]:
                del registry.instances[key]
        registry.classes[name] = cls
        setattr(cls, _NAME_ATTR, name)
        for attribute in cls.__dict__.values():
            kind = _method_kind(attribute)
            if kind is not None:
                for info in _infos(kind[1]):
                    info.method = kind[0]
        return cls

    return decorator


def register_instance(instance: object) -> None:
    """Register an instance under (its class's registered name, its ``config_name``), so
    a recovered workflow of its methods runs on it. ``DBOSConfiguredInstance.__init__``
    calls this. Another instance with the same names raises ``DBOSConfigError``; an
    instance of the same class defined again (a reloaded module) replaces the old one."""
    config_name = getattr(instance, "config_name", None)
    check_text(config_name, f"config_name of {type(instance).__qualname__}", non_empty=True)
    assert isinstance(config_name, str)
    class_name = class_name_of(type(instance))
    key = (class_name, config_name)
    existing = registry.instances.get(key)
    if (
        existing is not None
        and existing is not instance
        and (type(existing) is type(instance) or _origin(type(existing)) != _origin(type(instance)))
    ):
        raise DBOSConfigError(
            f"an instance of class {class_name!r} named {config_name!r} is already "
            "registered; give each DBOSConfiguredInstance of a class its own config_name"
        )
    registry.instances[key] = instance


class DBOSConfiguredInstance:
    """The base of a class whose instance methods are workflows (or steps, or
    transactions): each instance has a name, ``config_name``, unique within its class.

    A workflow started on an instance stores its class's name and this name, not the
    instance; a recovered (or resumed, forked, dequeued) workflow runs on the instance
    registered under those names in the process that runs it, so create the instances
    (the same names, the same configuration) in every process, before ``DBOS.launch()``
    if their workflows should be recovered at launch (a takeover later also finds an
    instance registered after launch). Decorate the class with ``@DBOS.dbos_class()``.
    """

    config_name: str
    """This instance's name, unique within its class: stored with its workflows."""

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        register_instance(self)


@dataclass(frozen=True)
class Receiver:
    """What a method workflow's call stores in place of its receiver: the names it is
    found by again, and the arguments stored (those after ``self`` or ``cls``)."""

    class_name: str | None
    config_name: str | None
    args: tuple[Any, ...]


def with_bound_receiver(func: object, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``DBOS.start_workflow(inst.wf, ...)`` and ``queue.enqueue(Cls.wf, ...)`` take a
    bound method: its ``self`` or ``cls`` comes first in the arguments of the call."""
    receiver = getattr(func, "__self__", None)
    if inspect.ismethod(func) and receiver is not None:
        return (receiver, *args)
    return args


def split_receiver(info: FunctionInfo, args: tuple[Any, ...]) -> Receiver:
    """Check a workflow's receiver at call time and split it off: an instance method
    needs a registered ``DBOSConfiguredInstance``, a classmethod a class; a method of a
    class without ``@DBOS.dbos_class()`` is refused (it could not be run again)."""
    if info.method == "instance":
        if not args:
            raise TypeError(f"workflow {info.name!r} is an instance method: call it on an instance")
        instance = args[0]
        class_name = class_name_of(type(instance))
        config_name = getattr(instance, "config_name", None)
        if not isinstance(config_name, str):
            raise DBOSConfigError(
                f"workflow {info.name!r} is an instance method of class {class_name!r}, "
                "whose instances have no config_name: derive the class from "
                "DBOSConfiguredInstance and call its __init__(config_name), so a recovered "
                "workflow finds its instance by name"
            )
        if registry.instances.get((class_name, config_name)) is not instance:
            raise DBOSConfigError(
                f"workflow {info.name!r} is called on an instance of class {class_name!r} "
                f"named {config_name!r} that is not the one registered under that name (was "
                "DBOSConfiguredInstance.__init__ called, and the registry kept since?)"
            )
        return Receiver(class_name, config_name, args[1:])
    if info.method == "class":
        if not args or not isinstance(args[0], type):
            raise TypeError(f"workflow {info.name!r} is a classmethod: call it on its class")
        return Receiver(class_name_of(args[0]), None, args[1:])
    if info.method is None and args:
        params = list(info.signature.parameters)
        if isinstance(args[0], type):
            raise DBOSConfigError(
                f"workflow {info.name!r} is called with a class as its first argument, as a "
                "classmethod is: decorate its class with @DBOS.dbos_class(), so a recovered "
                "workflow finds the class by name"
            )
        if params and params[0] == "self":
            raise DBOSConfigError(
                f"workflow {info.name!r} looks like an instance method (its first parameter "
                "is self): decorate its class with @DBOS.dbos_class() and derive it from "
                "DBOSConfiguredInstance, so a recovered workflow finds its instance by name"
            )
    return Receiver(None, None, args)


def stored_receiver(
    info: FunctionInfo, class_name: str | None, config_name: str | None
) -> tuple[tuple[Any, ...], str | None]:
    """The receiver to put before a stored workflow's arguments (``()`` for a function or
    a staticmethod), or, when this process cannot provide it, ``()`` and the reason."""
    if config_name is not None or info.method == "instance":
        if info.method != "instance":
            return (), (
                f"it was started on instance {config_name!r} of class {class_name!r}, and "
                f"{info.name!r} is not an instance method of a @DBOS.dbos_class() class here"
            )
        if class_name is None or config_name is None:
            return (), (
                f"{info.name!r} is an instance method here, and the workflow was stored "
                "without the names of an instance (started before its class was a "
                "@DBOS.dbos_class() with DBOSConfiguredInstance instances?)"
            )
        instance = registry.instances.get((class_name, config_name))
        if instance is None:
            return (), (
                f"no instance of class {class_name!r} named {config_name!r} is registered "
                "in this process (create that DBOSConfiguredInstance before launch)"
            )
        return (instance,), None
    if info.method == "class":
        cls = registry.classes.get(class_name) if class_name is not None else None
        if cls is None:
            return (), (
                f"its class {class_name!r} is not registered in this process (decorate it "
                "with @DBOS.dbos_class())"
            )
        return (cls,), None
    return (), None
