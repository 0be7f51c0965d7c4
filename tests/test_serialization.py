"""Serialization of workflow inputs, outputs and errors.

Unit tests of ``dbos_async._serialization.Codec`` with the JSON, pickle and a custom
serializer, then end-to-end tests through workflows on both backends.
"""

import ast
import dataclasses
import datetime as dt
import decimal
import inspect
import json
import math
import socket
import typing
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowError,
    DBOSWorkflowFunctionNotFoundError,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._serialization import Codec, JSONSerializer, PickleSerializer, make_serializer

from .conftest import stable_id

# --------------------------------------------------------------------------------------
# Types used by the tests (module level: pickle, get_type_hints and exception rebuilding
# all need to find them by name).


class SerModel(pydantic.BaseModel):
    name: str
    when: dt.datetime
    tags: set[str]
    pair: tuple[int, int]
    blob: bytes
    amount: decimal.Decimal


class SerAliasModel(pydantic.BaseModel):
    user_id: int = pydantic.Field(alias="userId")
    display: str = pydantic.Field(alias="displayName")


@dataclasses.dataclass
class SerPoint:
    x: int
    y: float
    label: str = "p"


@dataclasses.dataclass(frozen=True)
class SerBox:
    corner: SerPoint
    models: list[SerModel]
    key: uuid.UUID


@dataclasses.dataclass(frozen=True)
class SerFrozenPoint:
    x: int
    y: int


class SerStrictModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    side: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def area(self) -> int:
        return self.side * self.side


class SerPickleOnly:
    """Picklable, but not a JSON type, a pydantic model or a dataclass."""

    def __init__(self, a: int, payload: object) -> None:
        self.a = a
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SerPickleOnly) and self.a == other.a and self.payload == other.payload
        )

    def __hash__(self) -> int:
        return hash(self.a)


class SerCustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class SerPlainError(Exception):
    pass


class SerKeywordOnlyError(Exception):
    """Cannot be rebuilt from its args: ``__init__`` takes keyword-only arguments."""

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"reason: {reason}")


class SerOrphanError(Exception):
    """Claims to live in a module that is not imported anywhere."""


SerOrphanError.__module__ = "ser_module_that_does_not_exist"


class SerReprSerializer:
    """A custom serializer: Python literals, prefixed so its output is recognisable."""

    def __init__(self) -> None:
        self.serialized = 0
        self.deserialized = 0

    def serialize(self, obj: Any) -> str:
        text = repr(obj)
        ast.literal_eval(text)  # raises for anything that is not a literal
        self.serialized += 1
        return "custom:" + text

    def deserialize(self, data: str) -> Any:
        if not data.startswith("custom:"):
            raise ValueError(f"not written by SerReprSerializer: {data[:20]!r}")
        self.deserialized += 1
        return ast.literal_eval(data[len("custom:") :])


def _model(name: str = "m") -> SerModel:
    return SerModel(
        name=name,
        when=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        tags={"a", "b"},
        pair=(1, 2),
        blob=b"\xff\x00\xfe",
        amount=decimal.Decimal("12.50"),
    )


def _box() -> SerBox:
    return SerBox(
        corner=SerPoint(1, 2.5, "corner"),
        models=[_model("one"), _model("two")],
        key=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    )


def assert_same(actual: Any, expected: Any) -> None:
    """Equal, and of the same type all the way down (1 == 1.0 == True does not count)."""
    assert type(actual) is type(expected), f"{actual!r} is not a {type(expected).__name__}"
    assert actual == expected
    if isinstance(expected, (list, tuple)):
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, dict):
        actual_keys = {(type(k), k) for k in actual}
        expected_keys = {(type(k), k) for k in expected}
        assert actual_keys == expected_keys
        for k, e in expected.items():
            assert_same(actual[k], e)
    elif isinstance(expected, (set, frozenset)):
        assert {(type(v), v) for v in actual} == {(type(v), v) for v in expected}


@pytest.fixture
def codec() -> Codec:
    return Codec(JSONSerializer())


def json_roundtrip(codec: Codec, value: Any, annotation: Any = Any) -> Any:
    data = codec.dumps(value, "value under test")
    assert isinstance(data, str)
    return codec.loads(data, annotation)


# --------------------------------------------------------------------------------------
# JSON: plain and tagged values

SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**100,
    0.1,
    -2.5e-300,
    float("inf"),
    float("-inf"),
    "",
    "héllo wörld \u0000 \u2603 🎉",
    [],
    {},
    [1, "two", None, 3.0, False],
    {"a": 1, "b": [1, 2], "c": {"d": None}},
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_json_codec__roundtrips_json_types(codec: Codec, value: Any) -> None:
    assert_same(json_roundtrip(codec, value), value)


TAGGED: list[Any] = [
    (),
    (1,),
    (1, "a", None),
    [1, (2, 3)],
    {1, 2, 3},
    set(),
    frozenset({"x", "y"}),
    frozenset(),
    {1: "int key", 2.5: "float key", None: "none key", False: "bool key"},
    {(1, 2): "tuple key", frozenset({1}): "frozenset key", "s": "str key"},
    {"$dbos": "tuple", "v": [1, 2]},
    {"$dbos": "exc", "type": "builtins:ValueError", "msg": "spoof", "args": ["x"]},
    {"outer": {"$dbos": "map", "v": [[1, 2]]}},
    dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 58, 999999),
    dt.time(1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    dt.timedelta(days=3, seconds=7, microseconds=11),
    dt.timedelta(days=-1, seconds=5),
    dt.timedelta(0),
    uuid.UUID("0b7ad2d2-68e4-4a4a-9c1e-5a6b4a1f0d3c"),
    decimal.Decimal("1.10"),
    decimal.Decimal("-0.000"),
    decimal.Decimal("1E+30"),
    decimal.Decimal("3.141592653589793238462643383279502884197"),
    b"",
    b"plain ascii",
    b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
    bytes(range(256)),
]


@pytest.mark.parametrize("value", TAGGED, ids=stable_id)
def test_json_codec__roundtrips_non_json_types_as_their_type(codec: Codec, value: Any) -> None:
    assert_same(json_roundtrip(codec, value), value)


def test_json_codec__dict_with_dbos_key_stays_a_dict(codec: Codec) -> None:
    spoof = {"$dbos": "uuid", "v": "0b7ad2d2-68e4-4a4a-9c1e-5a6b4a1f0d3c"}
    result = json_roundtrip(codec, {"wrapped": spoof, "list": [spoof]})
    assert_same(result, {"wrapped": spoof, "list": [spoof]})


def test_json_codec__nan_stays_nan(codec: Codec) -> None:
    result = json_roundtrip(codec, [float("nan")])
    assert isinstance(result[0], float)
    assert math.isnan(result[0])


def test_json_codec__dict_order_is_kept(codec: Codec) -> None:
    plain = {"z": 1, "a": 2, "m": 3}
    mapped = {3: "c", 1: "a", 2: "b"}
    assert list(json_roundtrip(codec, plain)) == ["z", "a", "m"]
    assert list(json_roundtrip(codec, mapped)) == [3, 1, 2]


def test_json_codec__naive_datetime_stays_naive(codec: Codec) -> None:
    value = dt.datetime(2020, 2, 29, 12, 0, 0, 1)
    result = json_roundtrip(codec, value)
    assert_same(result, value)
    assert result.tzinfo is None


@pytest.mark.parametrize(
    "tz",
    [
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-11)),
        zoneinfo.ZoneInfo("Europe/Paris"),
    ],
    ids=str,
)
def test_json_codec__aware_datetime_keeps_instant_and_offset(codec: Codec, tz: dt.tzinfo) -> None:
    value = dt.datetime(2023, 7, 14, 10, 30, 15, 250000, tzinfo=tz)
    result = json_roundtrip(codec, value)
    assert isinstance(result, dt.datetime)
    assert result == value
    assert result.utcoffset() == value.utcoffset()
    assert result.replace(tzinfo=None) == value.replace(tzinfo=None)


def test_json_codec__decimal_keeps_its_exact_digits(codec: Codec) -> None:
    result = json_roundtrip(codec, decimal.Decimal("0.1000"))
    assert isinstance(result, decimal.Decimal)
    assert str(result) == "0.1000"


def test_json_codec__bytearray_comes_back_with_the_same_bytes(codec: Codec) -> None:
    result = json_roundtrip(codec, bytearray(b"\x00\xff\x10"))
    assert bytes(result) == b"\x00\xff\x10"


def test_json_codec__nested_containers_keep_every_type(codec: Codec) -> None:
    value = {
        "list": [1, (2, {3, 4}), [frozenset({(5, 6)}), {7: b"\x07"}]],
        (1, "k"): {dt.date(2000, 1, 1): [uuid.UUID(int=5), decimal.Decimal("9.99")]},
        frozenset({"a"}): ({"inner": (dt.timedelta(seconds=1),)},),
        "deep": [[[[("leaf", dt.time(1, 2))]]]],
        None: {"$dbos": [1, {"$dbos": None}]},
    }
    assert_same(json_roundtrip(codec, value), value)


def test_json_codec__output_is_json_text(codec: Codec) -> None:
    data = codec.dumps({"t": (1, 2), "b": b"\x01"}, "value")
    parsed = json.loads(data)
    assert isinstance(parsed, dict)
    assert set(parsed) == {"t", "b"}


def test_json_codec__unserializable_value_raises_serialization_error_naming_it(
    codec: Codec,
) -> None:
    with pytest.raises(DBOSSerializationError, match="the thing under test") as info:
        codec.dumps({"ok": 1, "bad": [object()]}, "the thing under test")
    assert "object" in str(info.value)
    assert isinstance(info.value, DBOSException)


@pytest.mark.parametrize(
    "value", [lambda: 1, object(), iter([1]), {1, object()}, print], ids=lambda v: type(v).__name__
)
def test_json_codec__rejects_values_without_a_json_form(codec: Codec, value: Any) -> None:
    with pytest.raises(DBOSSerializationError):
        codec.dumps(value, "value")


def test_json_codec__self_referencing_value_raises_serialization_error(codec: Codec) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(DBOSSerializationError):
        codec.dumps(loop, "value")


@pytest.mark.parametrize(
    "data", ["{not json", '{"$dbos": "no-such-tag", "v": 1}', "\x00"], ids=repr
)
def test_json_codec__loads_of_corrupt_data_raises_serialization_error(
    codec: Codec, data: str
) -> None:
    with pytest.raises(DBOSSerializationError):
        codec.loads(data)


def test_json_codec__loads_none_is_none(codec: Codec) -> None:
    assert codec.loads(None) is None
    assert codec.loads(None, SerModel) is None


# --------------------------------------------------------------------------------------
# JSON: pydantic models and dataclasses, guided by annotations


def test_json_codec__pydantic_model_comes_back_as_its_type(codec: Codec) -> None:
    model = _model()
    result = json_roundtrip(codec, model, SerModel)
    assert type(result) is SerModel
    assert result == model
    assert type(result.pair) is tuple
    assert type(result.tags) is set
    assert result.blob == b"\xff\x00\xfe"
    assert str(result.amount) == "12.50"


def _fields(value: Any) -> Any:
    """A model's or dataclass's fields as a dict (a dict is returned as it is)."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def test_json_codec__pydantic_model_without_annotation_keeps_its_fields(codec: Codec) -> None:
    model = _model()
    result = json_roundtrip(codec, model)
    assert SerModel.model_validate(_fields(result)) == model


def test_json_codec__pydantic_model_with_field_aliases_comes_back_as_its_type(
    codec: Codec,
) -> None:
    model = SerAliasModel(userId=7, displayName="Ada")
    result = json_roundtrip(codec, model, SerAliasModel)
    assert type(result) is SerAliasModel
    assert result == model


def test_json_codec__dataclass_comes_back_as_its_type(codec: Codec) -> None:
    point = SerPoint(3, 4.5, "q")
    result = json_roundtrip(codec, point, SerPoint)
    assert_same(result, point)


def test_json_codec__nested_dataclass_with_models_comes_back_as_its_type(codec: Codec) -> None:
    box = _box()
    result = json_roundtrip(codec, box, SerBox)
    assert type(result) is SerBox
    assert result == box
    assert type(result.corner) is SerPoint
    assert all(type(m) is SerModel for m in result.models)
    assert type(result.key) is uuid.UUID


def test_json_codec__model_with_computed_field_and_forbidden_extras_comes_back_typed(
    codec: Codec,
) -> None:
    model = SerStrictModel(side=3)
    result = json_roundtrip(codec, model, SerStrictModel)
    assert type(result) is SerStrictModel
    assert result == model


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (set[SerFrozenPoint], {SerFrozenPoint(1, 2), SerFrozenPoint(3, 4)}),
        (frozenset[SerFrozenPoint], frozenset({SerFrozenPoint(5, 6)})),
        (dict[SerFrozenPoint, str], {SerFrozenPoint(7, 8): "seven-eight"}),
    ],
    ids=["set", "frozenset", "dict-key"],
)
def test_json_codec__hashable_dataclasses_in_sets_and_keys_come_back_typed(
    codec: Codec, annotation: Any, value: Any
) -> None:
    assert_same(json_roundtrip(codec, value, annotation), value)


def test_json_codec__value_it_accepts_can_be_read_back_without_annotation(codec: Codec) -> None:
    """Whatever ``dumps`` accepts, ``loads`` must be able to read (else a workflow could
    finish with an output nobody can ever load)."""
    data = codec.dumps({SerFrozenPoint(1, 2)}, "value")
    result = codec.loads(data)
    assert len(result) == 1


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (list[SerModel], [_model("a"), _model("b")]),
        (dict[str, SerPoint], {"p": SerPoint(1, 2.0), "q": SerPoint(3, 4.0, "z")}),
        (tuple[SerPoint, SerModel], (SerPoint(1, 1.0), _model())),
        (SerModel | None, _model()),
        (SerModel | None, None),
        (list[SerPoint] | None, [SerPoint(9, 9.0)]),
    ],
    ids=["list", "dict", "tuple", "optional-model", "optional-none", "optional-list"],
)
def test_json_codec__containers_of_models_come_back_typed(
    codec: Codec, annotation: Any, value: Any
) -> None:
    assert_same(json_roundtrip(codec, value, annotation), value)


def _model_target(
    model: SerModel,
    models: list[SerModel],
    point: SerPoint,
    plain: int,
    *more: SerPoint,
    box: SerBox,
    maybe: SerModel | None = None,
    **extra: SerPoint,
) -> SerModel:
    raise AssertionError("never called")


def test_json_codec__load_inputs_uses_the_signature_hints() -> None:
    codec = Codec(JSONSerializer())
    sig = inspect.signature(_model_target)
    hints = typing.get_type_hints(_model_target)
    args = (_model("first"), [_model("x"), _model("y")], SerPoint(1, 2.0), 5, SerPoint(7, 8.0))
    kwargs = {"box": _box(), "maybe": _model("kw"), "other": SerPoint(0, 0.0, "extra")}

    data = codec.dump_inputs("_model_target", sig, args, kwargs)
    loaded_args, loaded_kwargs = codec.load_inputs(data, sig, hints)

    assert isinstance(loaded_args, tuple)
    assert_same(loaded_args, args)
    assert_same(loaded_kwargs, kwargs)


def test_json_codec__load_inputs_without_hints_keeps_the_values() -> None:
    codec = Codec(JSONSerializer())
    sig = inspect.signature(_model_target)
    args = (_model(), [], SerPoint(1, 2.0), 5)
    data = codec.dump_inputs("_model_target", sig, args, {"box": _box()})
    loaded_args, loaded_kwargs = codec.load_inputs(data, sig, {})
    assert len(loaded_args) == 4
    assert SerModel.model_validate(_fields(loaded_args[0])) == _model()
    assert loaded_args[1] == []
    assert _fields(loaded_args[2]) == {"x": 1, "y": 2.0, "label": "p"}
    assert_same(loaded_args[3], 5)
    assert set(loaded_kwargs) == {"box"}
    assert _fields(loaded_kwargs["box"])["key"] == _box().key


def test_json_codec__load_inputs_of_malformed_data_raises_serialization_error() -> None:
    codec = Codec(JSONSerializer())
    sig = inspect.signature(_model_target)
    with pytest.raises(DBOSSerializationError):
        codec.load_inputs(codec.dumps([1, 2], "list"), sig, {})


# --------------------------------------------------------------------------------------
# dump_inputs: argument naming and signature checks


def _three(a: Any, b: Any, *rest: Any, c: Any = None, **kw: Any) -> None:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    "serializer", [JSONSerializer(), PickleSerializer()], ids=["json", "pickle"]
)
@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((lambda: 0, 2), {}, "a"),
        ((1, lambda: 0), {}, "b"),
        ((1, 2), {"c": lambda: 0}, "c"),
        ((1,), {"b": lambda: 0}, "b"),
        ((1, 2, 3, lambda: 0), {}, "rest"),
        ((1, 2), {"surprise": lambda: 0}, "kw"),
        ((1, [0, {"deep": lambda: 0}]), {}, "b"),
    ],
    ids=["pos-a", "pos-b", "kw-c", "pos-as-kw-b", "varargs", "varkw", "nested-b"],
)
def test_dump_inputs__names_the_argument_that_cannot_be_serialized(
    serializer: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str
) -> None:
    codec = Codec(serializer)
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs("three_fn", inspect.signature(_three), args, kwargs)
    message = str(info.value)
    assert f"'{name}'" in message
    assert "three_fn" in message


def test_dump_inputs__error_does_not_blame_serializable_arguments() -> None:
    codec = Codec(JSONSerializer())
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs("three_fn", inspect.signature(_three), (1, 2), {"c": object()})
    message = str(info.value)
    assert "'c'" in message
    assert "'a'" not in message
    assert "'b'" not in message


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), ((1, 2), {"a": 3}), ((1, 2), {"c": 1, "d": 2, "c2": 3, "a": 0})],
    ids=["none", "missing-b", "a-twice", "a-twice-kw"],
)
def test_dump_inputs__call_not_matching_signature_raises_type_error(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    codec = Codec(JSONSerializer())
    with pytest.raises(TypeError, match="three_fn"):
        codec.dump_inputs("three_fn", inspect.signature(_three), args, kwargs)


def test_dump_inputs__too_many_positional_arguments_raise_type_error() -> None:
    def two(a: int, b: int) -> None: ...

    codec = Codec(JSONSerializer())
    with pytest.raises(TypeError):
        codec.dump_inputs("two", inspect.signature(two), (1, 2, 3), {})
    with pytest.raises(TypeError):
        codec.dump_inputs("two", inspect.signature(two), (1, 2), {"nope": 1})


def test_dump_inputs__valid_call_roundtrips() -> None:
    codec = Codec(JSONSerializer())
    sig = inspect.signature(_three)
    data = codec.dump_inputs("three_fn", sig, (1, (2,), 3), {"c": {4}, "x": b"\x05"})
    args, kwargs = codec.load_inputs(data, sig, {})
    assert_same(args, (1, (2,), 3))
    assert_same(kwargs, {"c": {4}, "x": b"\x05"})


# --------------------------------------------------------------------------------------
# Exceptions


def _error_roundtrip(exc: BaseException, serializer: Any = None) -> BaseException:
    codec = Codec(serializer or JSONSerializer())
    data = codec.dump_error(exc)
    assert isinstance(data, str)
    return codec.load_error(data)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        KeyError("missing"),
        RuntimeError(),
        ZeroDivisionError("division by zero"),
        FileNotFoundError(2, "No such file"),
        FileNotFoundError(2, "No such file or directory", "/tmp/missing.txt"),
        TimeoutError("slow"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    ],
    ids=[
        "ValueError",
        "KeyError",
        "RuntimeError-no-args",
        "ZeroDivisionError",
        "FileNotFoundError",
        "FileNotFoundError-with-filename",
        "TimeoutError",
        "UnicodeDecodeError",
    ],
)
def test_error_codec__builtin_exception_comes_back_as_its_type(exc: BaseException) -> None:
    result = _error_roundtrip(exc)
    assert type(result) is type(exc)
    assert str(result) == str(exc)
    assert result.args == exc.args


def test_error_codec__cancellation_error_comes_back_as_its_type() -> None:
    result = _error_roundtrip(DBOSWorkflowCancelledError("wf-8"))
    assert type(result) is DBOSWorkflowCancelledError
    assert result.workflow_id == "wf-8"


def test_error_codec__custom_exception_comes_back_as_its_type() -> None:
    result = _error_roundtrip(SerCustomError(42, "the answer"))
    assert type(result) is SerCustomError
    assert result.code == 42
    assert result.detail == "the answer"
    assert result.args == (42, "the answer")


def test_error_codec__exception_args_keep_their_types() -> None:
    exc = SerPlainError((1, 2), {3}, b"\x04", dt.date(2001, 1, 1), {5: "five"})
    result = _error_roundtrip(exc)
    assert type(result) is SerPlainError
    assert_same(result.args, exc.args)


def test_error_codec__max_step_retries_keeps_every_attempt_error() -> None:
    errors: list[BaseException] = [
        ValueError("attempt 1"),
        SerCustomError(2, "attempt 2"),
        KeyError("attempt 3"),
    ]
    result = _error_roundtrip(DBOSMaxStepRetriesExceeded("flaky_step", 3, errors))
    assert type(result) is DBOSMaxStepRetriesExceeded
    assert result.step_name == "flaky_step"
    assert result.max_attempts == 3
    assert [type(e) for e in result.errors] == [ValueError, SerCustomError, KeyError]
    assert [str(e) for e in result.errors] == [str(e) for e in errors]
    assert isinstance(result.errors[1], SerCustomError)
    assert result.errors[1].code == 2
    assert "flaky_step" in str(result)


@pytest.mark.parametrize(
    "exc",
    [
        DBOSNonExistentWorkflowError("wf-1"),
        DBOSConflictingWorkflowError("wf-2", "first", "second"),
        DBOSSerializationError("cannot serialize argument 'x'"),
        DBOSUnexpectedStepError("wf-3", 4, "expected_step", "recorded_step"),
        DBOSAwaitedWorkflowCancelledError("wf-4"),
        DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded("wf-5"),
        DBOSQueueDeduplicatedError("wf-6", "queue", "dedup"),
        DBOSWorkflowFunctionNotFoundError("wf-7", "gone_workflow"),
        DBOSWorkflowError("some.module.Type", "original message"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_error_codec__dbos_errors_come_back_as_their_type(exc: DBOSException) -> None:
    result = _error_roundtrip(exc)
    assert type(result) is type(exc)
    assert str(result) == str(exc)
    assert vars(result) == vars(exc)


@pytest.mark.parametrize(
    "serializer", [PickleSerializer(), SerReprSerializer()], ids=["pickle", "custom"]
)
def test_error_codec__errors_roundtrip_whatever_the_value_serializer(serializer: Any) -> None:
    result = _error_roundtrip(SerCustomError(7, "seven"), serializer)
    assert type(result) is SerCustomError
    assert result.code == 7


def test_error_codec__keyword_only_exception_becomes_workflow_error() -> None:
    result = _error_roundtrip(SerKeywordOnlyError(reason="disk full"))
    assert type(result) is DBOSWorkflowError
    assert "SerKeywordOnlyError" in result.type_name
    assert result.original_message == "reason: disk full"
    assert "SerKeywordOnlyError" in str(result)
    assert "reason: disk full" in str(result)


def test_error_codec__exception_from_unknown_module_becomes_workflow_error() -> None:
    result = _error_roundtrip(SerOrphanError("lost", "class"))
    assert type(result) is DBOSWorkflowError
    assert "SerOrphanError" in result.type_name
    assert "ser_module_that_does_not_exist" in result.type_name
    assert result.original_message == str(SerOrphanError("lost", "class"))


def test_error_codec__locally_defined_exception_becomes_workflow_error() -> None:
    class LocalError(Exception):
        pass

    result = _error_roundtrip(LocalError("only here"))
    assert type(result) is DBOSWorkflowError
    assert "LocalError" in result.type_name
    assert result.original_message == "only here"


def test_error_codec__workflow_error_is_a_dbos_exception() -> None:
    result = _error_roundtrip(SerKeywordOnlyError(reason="x"))
    assert isinstance(result, DBOSException)


def test_error_codec__exception_as_a_value_roundtrips(codec: Codec) -> None:
    result = json_roundtrip(codec, {"err": SerCustomError(1, "in a dict")})
    assert type(result["err"]) is SerCustomError
    assert result["err"].detail == "in a dict"


# --------------------------------------------------------------------------------------
# Pickle and custom serializers


def test_pickle_codec__roundtrips_arbitrary_class_instances() -> None:
    codec = Codec(PickleSerializer())
    value = {"obj": SerPickleOnly(1, {"nested": (1, 2)}), "set": {SerPickleOnly(2, None)}}
    result = codec.loads(codec.dumps(value, "value"))
    assert result == value
    assert type(result["obj"]) is SerPickleOnly


def test_pickle_codec__output_is_text() -> None:
    data = Codec(PickleSerializer()).dumps(SerPickleOnly(1, 2), "value")
    assert isinstance(data, str)
    data.encode("ascii")  # stored as text: must not carry raw pickle bytes


def test_pickle_codec__unpicklable_value_raises_serialization_error() -> None:
    codec = Codec(PickleSerializer())
    with pytest.raises(DBOSSerializationError, match="pickled thing"):
        codec.dumps(lambda: 1, "pickled thing")


def test_pickle_codec__corrupt_data_raises_serialization_error() -> None:
    with pytest.raises(DBOSSerializationError):
        Codec(PickleSerializer()).loads("bm90IGEgcGlja2xl")


def test_pickle_codec__load_inputs_roundtrips_instances() -> None:
    codec = Codec(PickleSerializer())
    sig = inspect.signature(_three)
    data = codec.dump_inputs("three_fn", sig, (SerPickleOnly(1, 2), 2), {"c": SerPickleOnly(3, 4)})
    args, kwargs = codec.load_inputs(data, sig, {})
    assert args == (SerPickleOnly(1, 2), 2)
    assert kwargs == {"c": SerPickleOnly(3, 4)}


def test_custom_codec__uses_the_custom_serializer() -> None:
    serializer = SerReprSerializer()
    codec = Codec(serializer)
    data = codec.dumps({"k": (1, b"\x00", {2})}, "value")
    assert data.startswith("custom:")
    assert serializer.serialized == 1
    assert codec.loads(data) == {"k": (1, b"\x00", {2})}
    assert serializer.deserialized == 1


def test_custom_codec__serializer_failure_becomes_serialization_error() -> None:
    codec = Codec(SerReprSerializer())
    with pytest.raises(DBOSSerializationError, match="custom thing"):
        codec.dumps(object(), "custom thing")


def test_custom_codec__deserializer_failure_becomes_serialization_error() -> None:
    with pytest.raises(DBOSSerializationError):
        Codec(SerReprSerializer()).loads('{"json": "not custom"}')


def test_custom_codec__dump_inputs_names_the_argument() -> None:
    codec = Codec(SerReprSerializer())
    with pytest.raises(DBOSSerializationError, match="'c'"):
        codec.dump_inputs("three_fn", inspect.signature(_three), (1, 2), {"c": object()})


def test_custom_codec__load_inputs_roundtrips() -> None:
    codec = Codec(SerReprSerializer())
    sig = inspect.signature(_three)
    data = codec.dump_inputs("three_fn", sig, (1, (2, 3)), {"c": {"d": [4]}})
    assert data.startswith("custom:")
    assert codec.load_inputs(data, sig, {}) == ((1, (2, 3)), {"c": {"d": [4]}})


def test_make_serializer__accepts_names_and_objects() -> None:
    assert isinstance(make_serializer(None), JSONSerializer)
    assert isinstance(make_serializer("json"), JSONSerializer)
    assert isinstance(make_serializer("pickle"), PickleSerializer)
    custom = SerReprSerializer()
    assert make_serializer(custom) is custom


@pytest.mark.parametrize("spec", ["yaml", "JSON ", 3, object(), SerPickleOnly], ids=stable_id)
def test_make_serializer__rejects_anything_else(spec: Any) -> None:
    from dbos_async import DBOSConfigError

    with pytest.raises(DBOSConfigError):
        make_serializer(spec)


# --------------------------------------------------------------------------------------
# End to end, on SQLite and Postgres

ser_body_calls: list[str] = []


@DBOS.workflow()
async def ser_takes_anything(label: str, value: Any = None, *, extra: Any = None) -> str:
    ser_body_calls.append(label)
    return label


@DBOS.workflow()
async def ser_model_workflow(model: SerModel, point: SerPoint, models: list[SerModel]) -> SerBox:
    assert type(model) is SerModel
    assert type(point) is SerPoint
    assert all(type(m) is SerModel for m in models)
    return SerBox(corner=point, models=[model, *models], key=uuid.UUID(int=99))


@DBOS.workflow()
async def ser_returns_model(name: str) -> SerModel:
    return _model(name)


@DBOS.workflow()
async def ser_returns_values() -> dict[str, Any]:
    return {
        "t": (1, 2),
        "s": {3},
        "b": b"\xff\x00",
        "d": decimal.Decimal("1.50"),
        "u": uuid.UUID(int=7),
        "when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "nul": "a\u0000b",
        1: "int key",
    }


@DBOS.workflow()
async def ser_returns_unserializable() -> Any:
    return object()


@DBOS.workflow()
async def ser_raises_custom(code: int) -> None:
    raise SerCustomError(code, "from a workflow")


@DBOS.workflow()
async def ser_raises_keyword_only() -> None:
    raise SerKeywordOnlyError(reason="cannot rebuild")


@DBOS.workflow()
async def ser_pickle_workflow(thing: SerPickleOnly) -> SerPickleOnly:
    return SerPickleOnly(thing.a + 1, thing.payload)


@DBOS.workflow()
async def ser_custom_workflow(value: Any) -> Any:
    return [value, value]


@DBOS.workflow()
async def ser_forward_ref_workflow(item: "SerLaterModel") -> "SerLaterModel":
    return SerLaterModel(n=item.n + 1)


class SerLaterModel(pydantic.BaseModel):
    """Defined after the workflow that names it (a forward reference)."""

    n: int


def _unserializable(kind: str) -> tuple[Any, Callable[[], None]]:
    if kind == "object":
        return object(), lambda: None
    if kind == "lambda":
        return (lambda: 1), lambda: None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    return sock, sock.close


async def _restart(db_url: str, **config: Any) -> None:
    """Replace the running DBOS with a new one on the same database."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test", **config})
    await DBOS.launch()


@pytest.mark.parametrize("kind", ["object", "lambda", "socket"])
async def test_workflow_inputs__unserializable_argument_leaves_no_workflow(
    dbos: DBOS, kind: str
) -> None:
    value, close = _unserializable(kind)
    ser_body_calls.clear()
    workflow_id = f"ser-bad-arg-{kind}-{uuid.uuid4()}"
    try:
        with SetWorkflowID(workflow_id), pytest.raises(DBOSSerializationError) as info:
            await ser_takes_anything("label", value)
    finally:
        close()
    assert "'value'" in str(info.value)
    assert ser_body_calls == []
    assert await DBOS.get_workflow_status(workflow_id) is None


async def test_workflow_inputs__unserializable_keyword_argument_is_named(dbos: DBOS) -> None:
    ser_body_calls.clear()
    workflow_id = f"ser-bad-kwarg-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(DBOSSerializationError) as info:
        await DBOS.start_workflow(ser_takes_anything, "label", extra=[1, lambda: 2])
    assert "'extra'" in str(info.value)
    assert "'label'" not in str(info.value)
    assert ser_body_calls == []
    assert await DBOS.get_workflow_status(workflow_id) is None


async def test_workflow_inputs__failed_serialization_does_not_block_the_id(dbos: DBOS) -> None:
    workflow_id = f"ser-retry-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(DBOSSerializationError):
        await ser_takes_anything("first", object())
    with SetWorkflowID(workflow_id):
        assert await ser_takes_anything("second", (1, 2)) == "second"
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.input is not None
    assert status.input["args"] == ["second", (1, 2)]


async def test_workflow_inputs__wrong_call_raises_type_error_and_leaves_no_workflow(
    dbos: DBOS,
) -> None:
    workflow_id = f"ser-type-error-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(TypeError):
        await ser_takes_anything("a", 1, 2)  # type: ignore[call-arg]
    assert await DBOS.get_workflow_status(workflow_id) is None


async def test_workflow_models__models_and_dataclasses_come_back_as_their_types(
    dbos: DBOS, db_url: str
) -> None:
    workflow_id = f"ser-models-{uuid.uuid4()}"
    model, point, models = _model("in"), SerPoint(5, 6.5, "pt"), [_model("l1"), _model("l2")]
    expected = SerBox(corner=point, models=[model, *models], key=uuid.UUID(int=99))
    with SetWorkflowID(workflow_id):
        result = await ser_model_workflow(model, point, models)
    assert result == expected
    assert type(result) is SerBox

    await _restart(db_url)
    handle = await DBOS.retrieve_workflow(workflow_id)
    stored = await handle.get_result()
    assert type(stored) is SerBox
    assert stored == expected
    assert type(stored.corner) is SerPoint
    assert all(type(m) is SerModel for m in stored.models)
    assert all(type(m.pair) is tuple and type(m.tags) is set for m in stored.models)

    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert type(status.output) is SerBox
    assert status.output == expected


async def test_workflow_models__model_result_is_typed_after_restart(
    dbos: DBOS, db_url: str
) -> None:
    workflow_id = f"ser-model-result-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id):
        assert await ser_returns_model("fresh") == _model("fresh")
    await _restart(db_url)
    stored = await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert type(stored) is SerModel
    assert stored == _model("fresh")
    # Running the same ID again returns the recorded value, also typed.
    with SetWorkflowID(workflow_id):
        again = await ser_returns_model("fresh")
    assert type(again) is SerModel
    assert again == _model("fresh")


async def test_workflow_values__tagged_values_survive_the_database(dbos: DBOS, db_url: str) -> None:
    workflow_id = f"ser-values-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id):
        expected = await ser_returns_values()
    await _restart(db_url)
    stored = await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert_same(stored, expected)


async def test_workflow_outputs__unserializable_result_ends_in_error(dbos: DBOS) -> None:
    workflow_id = f"ser-bad-output-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(DBOSSerializationError):
        await ser_returns_unserializable()
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, DBOSSerializationError)
    assert status.output is None
    with pytest.raises(DBOSSerializationError):
        await (await DBOS.retrieve_workflow(workflow_id)).get_result()


async def test_workflow_errors__custom_exception_is_rebuilt_from_the_database(
    dbos: DBOS, db_url: str
) -> None:
    workflow_id = f"ser-custom-error-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(SerCustomError):
        await ser_raises_custom(17)
    await _restart(db_url)
    with pytest.raises(SerCustomError) as info:
        await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert info.value.code == 17
    assert info.value.detail == "from a workflow"
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, SerCustomError)


async def test_workflow_errors__unrebuildable_exception_is_a_workflow_error_after_restart(
    dbos: DBOS, db_url: str
) -> None:
    workflow_id = f"ser-kwonly-error-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(SerKeywordOnlyError):
        await ser_raises_keyword_only()
    await _restart(db_url)
    with pytest.raises(DBOSWorkflowError) as info:
        await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert "SerKeywordOnlyError" in info.value.type_name
    assert info.value.original_message == "reason: cannot rebuild"


async def test_pickle_config__roundtrips_an_arbitrary_instance(db_url: str) -> None:
    await DBOS.destroy()
    DBOS({"database_url": db_url, "serializer": "pickle", "application_version": "test"})
    try:
        await DBOS.launch()
        workflow_id = f"ser-pickle-{uuid.uuid4()}"
        thing = SerPickleOnly(1, {"payload": (SerPickleOnly(0, None),)})
        with SetWorkflowID(workflow_id):
            result = await ser_pickle_workflow(thing)
        assert result == SerPickleOnly(2, thing.payload)

        await _restart(db_url, serializer="pickle")
        stored = await (await DBOS.retrieve_workflow(workflow_id)).get_result()
        assert type(stored) is SerPickleOnly
        assert stored == SerPickleOnly(2, thing.payload)
        status = await DBOS.get_workflow_status(workflow_id)
        assert status is not None
        assert status.input is not None
        assert status.input["args"] == [thing]
    finally:
        await DBOS.destroy()


async def test_pickle_config__json_config_rejects_the_same_instance(dbos: DBOS) -> None:
    workflow_id = f"ser-json-rejects-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id), pytest.raises(DBOSSerializationError, match="'thing'"):
        await ser_pickle_workflow(SerPickleOnly(1, 2))
    assert await DBOS.get_workflow_status(workflow_id) is None


async def test_custom_serializer_config__is_used_for_inputs_and_outputs(db_url: str) -> None:
    await DBOS.destroy()
    serializer = SerReprSerializer()
    DBOS({"database_url": db_url, "serializer": serializer, "application_version": "test"})
    try:
        await DBOS.launch()
        workflow_id = f"ser-custom-{uuid.uuid4()}"
        with SetWorkflowID(workflow_id):
            assert await ser_custom_workflow((1, b"\x02")) == [(1, b"\x02"), (1, b"\x02")]
        assert serializer.serialized >= 2  # the inputs and the output
        before = serializer.deserialized
        status = await DBOS.get_workflow_status(workflow_id)
        assert status is not None
        assert status.output == [(1, b"\x02"), (1, b"\x02")]
        assert serializer.deserialized > before
    finally:
        await DBOS.destroy()


async def test_workflow_models__forward_referenced_model_comes_back_typed(
    dbos: DBOS, db_url: str
) -> None:
    workflow_id = f"ser-forward-ref-{uuid.uuid4()}"
    with SetWorkflowID(workflow_id):
        assert await ser_forward_ref_workflow(SerLaterModel(n=1)) == SerLaterModel(n=2)
    await _restart(db_url)
    stored = await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert type(stored) is SerLaterModel
    assert stored == SerLaterModel(n=2)


def test_codec__the_runtimes_null_record_is_none_for_every_serializer() -> None:
    # send/set_event/write_stream steps and a timed-out recv are recorded as the literal
    # "null" whatever the serializer; reading them back must not hand it to pickle.
    assert Codec(PickleSerializer()).loads("null") is None
    assert Codec(JSONSerializer()).loads("null") is None
