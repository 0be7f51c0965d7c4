"""EncryptedSerializer: what workflows store is encrypted on both backends, reads back as
the same types, fails clearly with a wrong key, and rotates through ``old_keys``."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import subprocess
import sys
from typing import Any

import aiosqlite
import asyncpg
import pytest

from dbos_async import DBOS, DBOSConfigError, SetWorkflowID, WorkflowStatusString
from dbos_async._serialization import Codec
from dbos_async.encryption import PREFIX, DBOSDecryptionError, EncryptedSerializer

MARK = "PLAINTEXT-MARKER-7f3a"
KEY = EncryptedSerializer.generate_key()
NEW_KEY = EncryptedSerializer.generate_key()
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


# -- the serializer on its own ---------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    label: str


def test_roundtrip__keeps_types_and_hides_the_text() -> None:
    ser = EncryptedSerializer(KEY)
    value = {"t": (1, MARK), "when": WHEN, "b": b"\x00\x01", 3: {1, 2}}
    stored = ser.serialize(value)
    assert stored.startswith(PREFIX) and stored.isascii()
    assert MARK not in stored
    assert ser.deserialize(stored) == value
    assert ser.serialize(value) != stored  # a fresh nonce every time


def test_codec__errors_are_sealed_and_annotated_types_come_back() -> None:
    codec = Codec(EncryptedSerializer(KEY))
    stored = codec.dump_error(ValueError(MARK, 3))
    assert stored.startswith(PREFIX) and MARK not in stored
    error = codec.load_error(stored)
    assert isinstance(error, ValueError) and error.args == (MARK, 3)
    # The inner JSON serializer's annotations still apply behind the encryption.
    assert codec.loads(codec.dumps(Point(1, "a"), "value"), Point) == Point(1, "a")


def test_wrong_key__raises_a_decryption_error_naming_the_fix() -> None:
    stored = EncryptedSerializer(KEY).serialize(MARK)
    with pytest.raises(DBOSDecryptionError, match="decryption of a stored value failed") as e:
        EncryptedSerializer(NEW_KEY).deserialize(stored)
    assert "old_keys" in str(e.value)
    with pytest.raises(DBOSDecryptionError, match="decryption"):
        Codec(EncryptedSerializer(NEW_KEY)).load_error(
            Codec(EncryptedSerializer(KEY)).dump_error(ValueError())
        )


@pytest.mark.parametrize("cut", ["flip", "truncate"])
def test_tampered_value__raises_a_decryption_error(cut: str) -> None:
    ser = EncryptedSerializer(KEY)
    stored = ser.serialize(MARK)
    if cut == "flip":
        i = len(PREFIX) + 20
        altered = stored[:i] + ("A" if stored[i] != "A" else "B") + stored[i + 1 :]
    else:
        altered = stored[: len(PREFIX) + 10]
    with pytest.raises(DBOSDecryptionError, match="altered"):
        ser.deserialize(altered)


def test_context__binds_values_to_it() -> None:
    stored = EncryptedSerializer(KEY, context="prod").serialize(1)
    assert EncryptedSerializer(KEY, context=b"prod").deserialize(stored) == 1
    with pytest.raises(DBOSDecryptionError, match="context"):
        EncryptedSerializer(KEY, context="staging").deserialize(stored)


def test_plaintext__refused_unless_allowed() -> None:
    with pytest.raises(DBOSDecryptionError, match=r"not encrypted.*allow_plaintext=True"):
        EncryptedSerializer(KEY).deserialize('{"$dbos":"tuple","v":[1]}')
    migrating = EncryptedSerializer(KEY, allow_plaintext=True)
    assert migrating.deserialize('{"$dbos":"tuple","v":[1]}') == (1,)
    assert migrating.serialize(1).startswith(PREFIX)  # new values are still encrypted


def test_rotation__old_keys_decrypt_and_the_new_key_encrypts() -> None:
    old = EncryptedSerializer(KEY).serialize((MARK,))
    rotated = EncryptedSerializer(NEW_KEY, old_keys=[KEY])
    assert rotated.deserialize(old) == (MARK,)
    new = rotated.serialize(2)
    assert EncryptedSerializer(NEW_KEY).deserialize(new) == 2
    with pytest.raises(DBOSDecryptionError):
        EncryptedSerializer(KEY).deserialize(new)


def test_keys__raw_bytes_and_base64_of_either_alphabet() -> None:
    raw = bytes(range(32))
    stored = EncryptedSerializer(raw).serialize(1)
    import base64

    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        assert EncryptedSerializer(text).deserialize(stored) == 1
        assert EncryptedSerializer(text.rstrip("=")).deserialize(stored) == 1
    for size in (16, 24):
        assert (
            EncryptedSerializer(b"k" * size).deserialize(
                EncryptedSerializer(b"k" * size).serialize(1)
            )
            == 1
        )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "empty string"),
        ("not base64!", "not valid base64"),
        ("YWJj", "decodes from base64 to 3 bytes"),
        (b"short", "got 5 bytes"),
        (12345, "must be bytes or base64 text"),
    ],
)
def test_keys__invalid_ones_raise_config_errors(key: Any, message: str) -> None:
    with pytest.raises(DBOSConfigError, match=message):
        EncryptedSerializer(key)


def test_keys__an_invalid_old_key_is_named() -> None:
    with pytest.raises(DBOSConfigError, match=r"old_keys\[1\]"):
        EncryptedSerializer(KEY, old_keys=[NEW_KEY, "YWJj"])
    with pytest.raises(DBOSConfigError, match="list of keys"):
        EncryptedSerializer(KEY, old_keys=NEW_KEY)


def test_generate_key__is_32_random_bytes_in_base64() -> None:
    import base64

    assert len(base64.urlsafe_b64decode(KEY)) == 32 and KEY != NEW_KEY


def test_without_cryptography__construction_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r"pip install 'dbos_async\[encryption\]'"):
        EncryptedSerializer(KEY)


def test_import__dbos_async_never_imports_cryptography() -> None:
    code = (
        "import sys, dbos_async, dbos_async.encryption\n"
        "assert 'cryptography' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- a runtime on each backend --------------------------------------------------------

release = asyncio.Event()


class MarkedError(Exception):
    pass


@DBOS.step()
async def enc_step(text: str) -> dict[str, Any]:
    return {"echo": text, "at": WHEN}


@DBOS.step()
async def enc_failing_step(text: str) -> None:
    raise MarkedError(f"step failed: {text}")


@DBOS.workflow()
async def enc_workflow(text: str, pair: tuple[int, str], when: dt.datetime) -> tuple[Any, ...]:
    out = await enc_step(text)
    await DBOS.set_event("ev", {"secret": text})
    await DBOS.write_stream("st", f"stream {text}")
    await DBOS.write_stream("st", (1, text))
    await DBOS.close_stream("st")
    try:
        await enc_failing_step(text)
    except MarkedError as exc:
        caught = str(exc)
    message = await DBOS.recv("topic", timeout_seconds=30)
    return (out, pair, when, message, caught)


@DBOS.workflow()
async def enc_raising(text: str) -> None:
    raise MarkedError(f"workflow failed: {text}")


@DBOS.workflow()
async def enc_waiting(text: str) -> str:
    await DBOS.set_event("started", text)  # (its step row holds the runtime's "null")
    await enc_step(text)
    await release.wait()
    return f"done {text}"


def _config(db_url: str, serializer: EncryptedSerializer) -> Any:
    return {"database_url": db_url, "application_version": "enc", "serializer": serializer}


async def _raw_dump(db_url: str) -> str:
    """Every row of every table, system and application, as one text."""
    rows: list[Any] = []
    if db_url.startswith("sqlite"):
        async with aiosqlite.connect(db_url.removeprefix("sqlite:///")) as conn:
            cur = await conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = [r[0] for r in await cur.fetchall()]
            for table in tables:
                cur = await conn.execute(f'SELECT * FROM "{table}"')
                rows += [tuple(r) for r in await cur.fetchall()]
    else:
        conn = await asyncpg.connect(db_url)
        try:
            tables = await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            for t in tables:
                got = await conn.fetch(f'SELECT * FROM "{t[0]}"."{t[1]}"')
                rows += [tuple(r.values()) for r in got]
        finally:
            await conn.close()
    assert rows
    return repr(rows)


async def _run_everything(db_url: str) -> None:
    DBOS(_config(db_url, EncryptedSerializer(KEY)))
    await DBOS.launch()
    with SetWorkflowID("enc-main"):
        handle = await DBOS.start_workflow(enc_workflow, MARK, (7, MARK), WHEN)
    await DBOS.send("enc-main", {"msg": MARK}, topic="topic")
    result = await handle.get_result()
    assert result == (
        {"echo": MARK, "at": WHEN},
        (7, MARK),
        WHEN,
        {"msg": MARK},
        f"step failed: {MARK}",
    )
    with SetWorkflowID("enc-raise"), pytest.raises(MarkedError, match=MARK):
        await enc_raising(MARK)
    assert await DBOS.get_event("enc-main", "ev") == {"secret": MARK}
    assert [v async for v in DBOS.read_stream("enc-main", "st")] == [f"stream {MARK}", (1, MARK)]
    steps = await DBOS.list_workflow_steps("enc-main")
    assert [s.output for s in steps][:2] == [{"echo": MARK, "at": WHEN}, None]
    status = await DBOS.get_workflow_status("enc-main")
    assert status is not None and status.input == {"args": [MARK, (7, MARK), WHEN], "kwargs": {}}
    await DBOS.destroy()


async def test_runtime__nothing_stored_in_plaintext(db_url: str) -> None:
    await DBOS.destroy()
    try:
        await _run_everything(db_url)
    finally:
        await DBOS.destroy()
    dump = await _raw_dump(db_url)
    assert MARK not in dump
    assert PREFIX in dump and "enc-main" in dump  # the dump does hold the rows
    # Identifiers stay readable: names, event keys, topics, stream keys, statuses.
    for plain in ("enc_workflow", "'ev'", "'topic'", "'st'", "SUCCESS", "ERROR"):
        assert plain in dump


async def test_runtime__wrong_key_then_rotation(db_url: str) -> None:
    await DBOS.destroy()
    try:
        await _run_everything(db_url)
        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY)))
        await DBOS.launch()
        with pytest.raises(DBOSDecryptionError, match="decryption of a stored value failed"):
            await (await DBOS.retrieve_workflow("enc-main")).get_result()
        with pytest.raises(DBOSDecryptionError, match="old_keys"):
            await (await DBOS.retrieve_workflow("enc-raise")).get_result()
        with pytest.raises(DBOSDecryptionError):
            await DBOS.get_event("enc-main", "ev")
        await DBOS.destroy()

        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY, old_keys=[KEY])))
        await DBOS.launch()
        result = await (await DBOS.retrieve_workflow("enc-main")).get_result()
        assert result[1:3] == ((7, MARK), WHEN)
        with pytest.raises(MarkedError, match=MARK):
            await (await DBOS.retrieve_workflow("enc-raise")).get_result()
        with SetWorkflowID("enc-after"), pytest.raises(MarkedError):
            await enc_raising("new")
        await DBOS.destroy()

        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY)))  # new data: the new key alone
        await DBOS.launch()
        with pytest.raises(MarkedError, match="new"):
            await (await DBOS.retrieve_workflow("enc-after")).get_result()
    finally:
        await DBOS.destroy()


async def test_runtime__recovery_with_wrong_key_logs_and_keeps_the_workflow(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    global release
    release = asyncio.Event()
    await DBOS.destroy()
    try:
        DBOS(_config(db_url, EncryptedSerializer(KEY)))
        await DBOS.launch()
        with SetWorkflowID("enc-wait"):
            await DBOS.start_workflow(enc_waiting, MARK)

        async def two_steps() -> bool:
            return len(await DBOS.list_workflow_steps("enc-wait")) == 2

        await _until(two_steps, "two steps of enc-wait")
        await DBOS.destroy()  # left PENDING, its process gone

        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY)))
        with caplog.at_level(logging.ERROR, logger="dbos_async"):
            await DBOS.launch()
        assert any(
            "enc-wait" in r.getMessage() and "decryption" in r.getMessage() for r in caplog.records
        )
        with pytest.raises(DBOSDecryptionError):  # (it reads the inputs)
            await DBOS.get_workflow_status("enc-wait")
        await DBOS.destroy()

        release.set()
        DBOS(_config(db_url, EncryptedSerializer(KEY)))
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("enc-wait")
        assert await asyncio.wait_for(handle.get_result(), 30) == f"done {MARK}"
        after = await DBOS.get_workflow_status("enc-wait")
        assert after is not None and after.status == WorkflowStatusString.SUCCESS
    finally:
        await DBOS.destroy()


GATES: dict[str, asyncio.Event] = {}


@DBOS.step()
async def enc_second_step(text: str) -> str:
    return f"second {text}"


@DBOS.workflow()
async def enc_two_phases(text: str) -> str:
    await enc_step(text)
    await GATES["first"].wait()
    try:
        second = await enc_second_step(text)
    except Exception:  # what a replay must never let workflow code do
        return "diverged"
    await GATES["second"].wait()
    return f"done {second}"


async def _until(predicate: Any, what: str) -> None:
    for _ in range(1000):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_runtime__a_step_recorded_with_another_key_stops_the_replay_pending(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that cannot read a step another process recorded (a rolling deploy with
    the old key) does not hand the decryption error to the workflow's code, which could
    take another path: the run stops, the workflow stays PENDING, and a process with the
    key finishes it."""
    GATES.update(first=asyncio.Event(), second=asyncio.Event())

    async def steps_recorded(n: int) -> bool:
        return len(await DBOS.list_workflow_steps("enc-2p")) == n

    await DBOS.destroy()
    try:
        DBOS(_config(db_url, EncryptedSerializer(KEY)))  # writes step 1 with KEY
        await DBOS.launch()
        with SetWorkflowID("enc-2p"):
            await DBOS.start_workflow(enc_two_phases, MARK)
        await _until(lambda: steps_recorded(1), "step 1")
        await DBOS.destroy()

        GATES["first"].set()  # the new key writes step 2 and waits
        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY, old_keys=[KEY])))
        await DBOS.launch()
        await _until(lambda: steps_recorded(2), "step 2")
        await DBOS.destroy()

        DBOS(_config(db_url, EncryptedSerializer(KEY)))  # the old key cannot read step 2
        with caplog.at_level(logging.ERROR, logger="dbos_async"):
            await DBOS.launch()

            async def logged() -> bool:
                return any("cannot replay its step 2" in r.getMessage() for r in caplog.records)

            await _until(logged, "the replay failure in the log")
        status = await DBOS.get_workflow_status("enc-2p")
        assert status is not None and status.status == WorkflowStatusString.PENDING
        await DBOS.destroy()

        GATES["second"].set()
        DBOS(_config(db_url, EncryptedSerializer(NEW_KEY, old_keys=[KEY])))
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("enc-2p")
        assert await asyncio.wait_for(handle.get_result(), 30) == f"done second {MARK}"
    finally:
        await DBOS.destroy()


async def test_runtime__migrating_a_plaintext_database_needs_allow_plaintext(db_url: str) -> None:
    await DBOS.destroy()
    try:
        DBOS({"database_url": db_url, "application_version": "enc"})
        await DBOS.launch()
        with SetWorkflowID("enc-plain"), pytest.raises(MarkedError):
            await enc_raising("before")
        await DBOS.destroy()

        DBOS(_config(db_url, EncryptedSerializer(KEY)))
        await DBOS.launch()
        with pytest.raises(DBOSDecryptionError, match="allow_plaintext=True"):
            await (await DBOS.retrieve_workflow("enc-plain")).get_result()
        await DBOS.destroy()

        DBOS(_config(db_url, EncryptedSerializer(KEY, allow_plaintext=True)))
        await DBOS.launch()
        with pytest.raises(MarkedError, match="before"):
            await (await DBOS.retrieve_workflow("enc-plain")).get_result()
        with SetWorkflowID("enc-new"), pytest.raises(MarkedError):
            await enc_raising(MARK)
        await DBOS.destroy()
    finally:
        await DBOS.destroy()
    dump = await _raw_dump(db_url)
    assert "workflow failed: before" in dump and MARK not in dump
