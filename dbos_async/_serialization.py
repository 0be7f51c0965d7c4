"""Turning workflow inputs, outputs and errors into stored text and back.

The default serializer writes JSON. Values JSON has no type for are written as tagged
objects ``{"$dbos": tag, "v": ...}`` so they come back as the same type: tuples, sets,
dicts with non-string keys, datetimes, dates, times, timedeltas, UUIDs, Decimals, bytes
and exceptions. Pydantic models and dataclasses are written as their fields and come back
as their type when the receiving function's annotation names it (``TypeAdapter``).

Pickle is used only when the configuration asks for it (``serializer="pickle"``); a user
object with ``serialize``/``deserialize`` methods may replace both.
"""

from __future__ import annotations

import base64
import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import json
import pickle
import sys
import typing
import uuid
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import pydantic

from ._errors import DBOSSerializationError, DBOSWorkflowError

__all__ = ["Codec", "JSONSerializer", "PickleSerializer", "Serializer", "make_serializer"]

_TAG = "$dbos"


@runtime_checkable
class Serializer(Protocol):
    """What a custom serializer provides.

    The text ``"null"`` always reads back as ``None``, whatever the serializer (the
    runtime records the steps that return nothing with it), so ``serialize`` must never
    produce exactly ``"null"`` for another value.

    A serializer that wraps another one and transforms its text (``EncryptedSerializer``
    in ``dbos_async.encryption``) may also have, all optional:

    - ``inner``: the wrapped serializer; when it is the JSON serializer, decoded values
      are turned back into the annotated types (models, dataclasses) as with plain JSON;
    - ``seal(text) -> str`` and ``unseal(text) -> str``: applied to the JSON text of
      recorded errors, which the codec writes itself rather than with ``serialize``.
    """

    def serialize(self, obj: Any) -> str: ...

    def deserialize(self, data: str) -> Any: ...


class _Unserializable(Exception):
    def __init__(self, path: str, value: object) -> None:
        super().__init__(f"{path}: object of type {type(value).__qualname__} is not serializable")


def _exc_type_name(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}:{cls.__qualname__}"


def _to_jsonable(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value) if isinstance(value, enum.Enum) else value
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if _TAG not in value and all(isinstance(k, str) for k in value):
            return {k: _to_jsonable(v, f"{path}[{k!r}]") for k, v in value.items()}
        return {
            _TAG: "map",
            "v": [
                [_to_jsonable(k, f"{path}.key"), _to_jsonable(v, f"{path}[{k!r}]")]
                for k, v in value.items()
            ],
        }
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        tag = "set" if isinstance(value, set) else "frozenset"
        return {_TAG: tag, "v": [_to_jsonable(v, f"{path}{{}}") for v in value]}
    if isinstance(value, dt.datetime):
        return {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {_TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {_TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {_TAG: "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {_TAG: "decimal", "v": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value, path)
    if isinstance(value, pydantic.BaseModel):
        # By alias, without computed fields: what the model's own validation accepts.
        return _to_jsonable(value.model_dump(by_alias=True, round_trip=True), path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_jsonable(getattr(value, f.name), f"{path}.{f.name}")
            for f in dataclasses.fields(value)
        }
    if isinstance(value, BaseException):
        raw_args = list(value.args)
        if isinstance(value, OSError) and value.filename is not None and len(raw_args) == 2:
            # OSError keeps its file names out of .args; its constructor takes them back.
            raw_args.append(value.filename)
            if value.filename2 is not None:
                raw_args.extend([None, value.filename2])
        try:
            args: Any = _to_jsonable(raw_args, f"{path}.args")
        except _Unserializable:
            args = None
        return {_TAG: "exc", "type": _exc_type_name(value), "msg": str(value), "args": args}
    raise _Unserializable(path, value)


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is made of JSON's own exact types only (str, int, float, bool,
    None, lists, dicts with str keys and no tag key): then ``_to_jsonable`` would give
    back an equal copy, so the value is encoded as it is, with no copy and no element
    paths built. (The common case: most inputs and outputs.)"""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return True
    if t is list:
        return all(_is_plain(v) for v in value)
    if t is dict:
        return _TAG not in value and all(type(k) is str and _is_plain(v) for k, v in value.items())
    return False


#: One encoder for every call: ``json.dumps`` with ``separators`` builds a new one each
#: time. Its other settings are ``json.dumps``'s defaults.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _c_encoder() -> Callable[[Any], str] | None:
    """``_ENCODER.encode`` without rebuilding the C encoder on every call (which
    ``encode`` does), or None where the C accelerator is missing or is not what this
    expects. It skips the circular-reference check: what it encodes is a tree that
    ``_is_plain`` or ``_to_jsonable`` has walked through, which a cycle never gets past
    (it recurses until ``RecursionError``, as ``_to_jsonable`` always did)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        iterencode = make(
            None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",",
            False, False, True,
        )  # fmt: skip
        probe = {"a": [1, 2.5, None, True, "é"], "b": {}}

        def encode(value: Any) -> str:
            return "".join(iterencode(value, 0))

        if encode(probe) != _ENCODER.encode(probe):
            return None
    except Exception:
        return None
    return encode


_encode: Callable[[Any], str] = _c_encoder() or _ENCODER.encode


def _to_json(value: Any) -> str:
    """The JSON text of ``value`` (tagged where JSON has no type: see the module docstring)."""
    t = type(value)
    if t is int:
        return int.__repr__(value)  # what the encoder writes for an int
    if t is str:
        return _ENCODER.encode(value)
    return _encode(value if _is_plain(value) else _to_jsonable(value, "value"))


def _from_json(data: str) -> Any:
    """``json.loads(data, object_hook=_from_tagged)``, with one decoder for every call."""
    if type(data) is not str or data.startswith("\ufeff"):
        return json.loads(data, object_hook=_from_tagged)  # its own errors
    return _DECODER.decode(data)


def _rebuild_exception(type_name: str, message: str, args: list[Any] | None) -> BaseException:
    module_name, _, qualname = type_name.partition(":")
    target: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None) if target is not None else None
    if args is not None and isinstance(target, type) and issubclass(target, BaseException):
        try:
            return target(*args)
        except Exception:
            pass
    return DBOSWorkflowError(type_name.replace(":", "."), message)


def _set_of(kind: Callable[[list[Any]], Any], items: list[Any]) -> Any:
    """A set, or a list when its members were hashable objects (dataclasses) that came back
    as dicts; the receiving annotation (``set[Point]``) makes it a set again."""
    try:
        return kind(items)
    except TypeError:
        return items


def _map_of(pairs: list[list[Any]]) -> Any:
    """A dict, or a list of ``(key, value)`` pairs when the keys came back unhashable;
    ``conform`` rebuilds the dict from a ``dict[K, V]`` annotation."""
    try:
        return {k: x for k, x in pairs}
    except TypeError:
        return [(k, x) for k, x in pairs]


def _from_tagged(obj: dict[str, Any]) -> Any:
    tag = obj.get(_TAG)
    if tag is None:
        return obj
    v = obj.get("v")
    decoders: dict[str, Callable[[Any], Any]] = {
        "map": _map_of,
        "tuple": tuple,
        "set": lambda v: _set_of(set, v),
        "frozenset": lambda v: _set_of(frozenset, v),
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
        "uuid": uuid.UUID,
        "decimal": decimal.Decimal,
        "bytes": base64.b64decode,
    }
    if tag == "exc":
        return _rebuild_exception(obj["type"], obj["msg"], obj["args"])
    decoder = decoders.get(tag)
    if decoder is None:
        raise DBOSSerializationError(f"unknown stored value tag {tag!r}")
    return decoder(v)


#: One decoder for every call, likewise: ``json.loads`` with ``object_hook`` builds one
#: each time.
_DECODER = json.JSONDecoder(object_hook=_from_tagged)


class JSONSerializer:
    """The default serializer: JSON text with tagged values (see the module docstring)."""

    def serialize(self, obj: Any) -> str:
        return _to_json(obj)

    def deserialize(self, data: str) -> Any:
        return _from_json(data)


class PickleSerializer:
    """Pickle, base64-encoded. Only used when the configuration asks for it."""

    def serialize(self, obj: Any) -> str:
        return base64.b64encode(pickle.dumps(obj)).decode("ascii")

    def deserialize(self, data: str) -> Any:
        return pickle.loads(base64.b64decode(data))


def make_serializer(spec: object) -> Serializer:
    """The serializer a ``serializer`` configuration value names."""
    from ._errors import DBOSConfigError

    if spec is None or spec == "json":
        return JSONSerializer()
    if spec == "pickle":
        return PickleSerializer()
    if isinstance(spec, Serializer) and not isinstance(spec, str):
        return spec
    raise DBOSConfigError(
        f"config 'serializer' must be 'json', 'pickle' or an object with "
        f"serialize()/deserialize(); got {spec!r}"
    )


_ADAPTERS: dict[Any, pydantic.TypeAdapter[Any] | None] = {}


def _adapter(annotation: Any) -> pydantic.TypeAdapter[Any] | None:
    try:
        return _ADAPTERS[annotation]
    except KeyError:
        pass
    except TypeError:  # unhashable annotation
        return None
    try:
        adapter: pydantic.TypeAdapter[Any] | None = pydantic.TypeAdapter(annotation)
    except Exception:
        adapter = None
    _ADAPTERS[annotation] = adapter
    return adapter


def _needs_adapter(annotation: Any) -> bool:
    return annotation not in (Any, inspect.Parameter.empty, None, object)


def conform(value: Any, annotation: Any) -> Any:
    """Turn a decoded value into the annotated type where one is named (models, dataclasses)."""
    if not _needs_adapter(annotation):
        return value
    origin = typing.get_origin(annotation)
    if (
        isinstance(value, list)
        and origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping)
        and all(isinstance(p, tuple) and len(p) == 2 for p in value)
    ):
        key_hint, value_hint = typing.get_args(annotation) or (Any, Any)
        try:
            return {conform(k, key_hint): conform(v, value_hint) for k, v in value}
        except TypeError:
            return value
    adapter = _adapter(annotation)
    if adapter is None:
        return value
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError:
        return value


#: Per signature (by identity, the signature kept alive beside its counts): how many
#: positional arguments it takes at least and at most, or None when it has parameters
#: other than plain positional ones (``*args``, keyword-only, ``**kwargs``).
_POSITIONAL: dict[int, tuple[inspect.Signature, tuple[int, int] | None]] = {}


def _positional_range(sig: inspect.Signature) -> tuple[int, int] | None:
    entry = _POSITIONAL.get(id(sig))
    if entry is not None and entry[0] is sig:
        return entry[1]
    params = list(sig.parameters.values())
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    counts = None
    if all(p.kind in plain for p in params):
        required = sum(1 for p in params if p.default is inspect.Parameter.empty)
        counts = (required, len(params))
    if len(_POSITIONAL) < 10_000:  # (signatures are few: those of registered functions)
        _POSITIONAL[id(sig)] = (sig, counts)
    return counts


def _binds(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when ``sig.bind(*args, **kwargs)`` is sure to succeed without running it: no
    keyword arguments, and a count of positional ones that a signature of plain positional
    parameters accepts. (``bind`` is the slow part of starting a workflow otherwise.)"""
    if kwargs:
        return False
    counts = _positional_range(sig)
    return counts is not None and counts[0] <= len(args) <= counts[1]


class Codec:
    """Encodes what the runtime stores with the configured serializer.

    Errors are always written as JSON (type, message and arguments), so they are readable
    from the database whatever serializer the values use; a serializer with ``seal`` and
    ``unseal`` (encryption) has that JSON text sealed too.
    """

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer
        inner = getattr(serializer, "inner", None)
        self._json = isinstance(serializer, JSONSerializer) or isinstance(inner, JSONSerializer)
        # A wrapping serializer (encryption) seals error records as well as values.
        seal, unseal = getattr(serializer, "seal", None), getattr(serializer, "unseal", None)
        self._seal: Callable[[str], str] | None = seal if callable(seal) else None
        self._unseal: Callable[[str], str] | None = unseal if callable(unseal) else None

    def dumps(self, value: Any, what: str) -> str:
        """Serialize one value; ``what`` names it in the error ("output of step 'f'")."""
        try:
            return self.serializer.serialize(value)
        except _Unserializable as exc:
            raise DBOSSerializationError(f"cannot serialize {what}: {exc}") from None
        except Exception as exc:
            raise DBOSSerializationError(
                f"cannot serialize {what}: {type(exc).__name__}: {exc}"
            ) from exc

    def loads(self, data: str | None, annotation: Any = Any) -> Any:
        # The runtime records its steps that return nothing (send, set_event, a stream
        # write, a timed-out recv) as the literal "null" whatever the serializer, so that
        # text is None for every serializer, not only JSON (pickle, encryption).
        if data is None or data == "null":
            return None
        try:
            value = self.serializer.deserialize(data)
        except DBOSSerializationError:
            raise
        except Exception as exc:
            raise DBOSSerializationError(
                f"cannot deserialize a stored value: {type(exc).__name__}: {exc}"
            ) from exc
        return conform(value, annotation) if self._json else value

    def dump_inputs(
        self,
        func_name: str,
        sig: inspect.Signature | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> str:
        """Serialize a call's arguments, naming the argument that cannot be serialized.
        Without a signature (a client naming a workflow it does not have), arguments are
        named by position or keyword."""
        if sig is not None and not _binds(sig, args, kwargs):
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{func_name}(): {exc}") from None
        try:
            return self.serializer.serialize({"args": list(args), "kwargs": kwargs})
        except Exception as whole:
            if sig is not None:
                arguments = dict(sig.bind(*args, **kwargs).arguments)
            else:
                arguments = {f"#{i}": value for i, value in enumerate(args)} | kwargs
            for name, value in arguments.items():
                try:
                    self.serializer.serialize(value)
                except Exception as exc:
                    reason = (
                        exc if isinstance(exc, _Unserializable) else f"{type(exc).__name__}: {exc}"
                    )
                    raise DBOSSerializationError(
                        f"argument {name!r} of {func_name!r} cannot be serialized: {reason}"
                    ) from None
            raise DBOSSerializationError(
                f"the arguments of {func_name!r} cannot be serialized: {whole}"
            ) from whole

    def load_inputs(
        self, data: str, sig: inspect.Signature, hints: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        raw = self.loads(data)
        if not isinstance(raw, dict) or "args" not in raw:
            raise DBOSSerializationError("stored workflow inputs are malformed")
        args: list[Any] = list(raw["args"])
        kwargs: dict[str, Any] = dict(raw.get("kwargs") or {})
        if not self._json:
            return tuple(args), kwargs
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        var_pos = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        var_kw = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        for i, value in enumerate(args):
            if i < len(positional):
                args[i] = conform(value, hints.get(positional[i].name, Any))
            elif var_pos is not None:
                args[i] = conform(value, hints.get(var_pos.name, Any))
        for key, value in kwargs.items():
            if key in sig.parameters:
                kwargs[key] = conform(value, hints.get(key, Any))
            elif var_kw is not None:
                kwargs[key] = conform(value, hints.get(var_kw.name, Any))
        return tuple(args), kwargs

    def dump_error(self, exc: BaseException) -> str:
        text = _encode(_to_jsonable(exc, "error"))
        return text if self._seal is None else self._seal(text)

    def load_error(self, data: str) -> BaseException:
        # ("null" stands for a missing error record; it was never sealed.)
        if self._unseal is not None and data != "null":
            try:
                data = self._unseal(data)
            except DBOSSerializationError:
                raise
            except Exception as exc:
                raise DBOSSerializationError(
                    f"cannot deserialize a stored error: {type(exc).__name__}: {exc}"
                ) from exc
        try:
            value = _from_json(data)
        except Exception as exc:
            raise DBOSSerializationError(f"cannot deserialize a stored error: {exc}") from exc
        if isinstance(value, BaseException):
            return value
        return DBOSWorkflowError("unknown", str(value))
