"""Scheduled workflows (API.md section 6): ``@DBOS.scheduled`` and its loop,
``DBOS.backfill_schedule``, and decoration errors, in one process on both backends.

The cron parser itself is tested in test_cron.py. Scheduled workflows live in the
process-global registry and would fire in every later DBOS of the session, so each test
defines its workflows inside the test, launches DBOS only after decorating them, and the
autouse fixture removes every ``ts_`` workflow and schedule from the registry afterwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbos_async import DBOS, DBOSConfigError, WorkflowStatusString
from dbos_async._registry import registry

PREFIX = "ts_"
SECOND = timedelta(seconds=1)
EVERY_SECOND = "* * * * * *"

# What the workflows below saw: name -> [(scheduled_time, actual_time, body_start)].
runs: dict[str, list[tuple[datetime, datetime, datetime]]] = {}


def _forget_test_functions() -> None:
    for table in (registry.schedules, registry.workflows):
        for name in [n for n in table if n.startswith(PREFIX)]:
            table.pop(name, None)


@pytest.fixture(autouse=True)
async def _isolate() -> AsyncIterator[None]:
    """No DBOS before the test; afterwards destroy it and unregister the test's
    scheduled workflows so they fire in no other test's database."""
    await DBOS.destroy()
    _forget_test_functions()
    runs.clear()
    try:
        yield
    finally:
        await DBOS.destroy()
        _forget_test_functions()
        runs.clear()
    assert not [n for n in registry.schedules if n.startswith(PREFIX)]


@pytest.fixture
async def url(db_url: str) -> AsyncIterator[str]:
    """``db_url``, with DBOS destroyed before the database is dropped (the autouse
    fixture is set up first, so it is torn down after ``db_url``)."""
    try:
        yield db_url
    finally:
        await DBOS.destroy()


async def launch(db_url: str) -> None:
    """Create and launch DBOS on ``db_url`` (the schedules must be registered first)."""
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


def record(name: str, scheduled_time: datetime, actual_time: datetime) -> None:
    runs.setdefault(name, []).append((scheduled_time, actual_time, datetime.now(UTC)))


def slots(name: str) -> list[datetime]:
    return [s for s, _, _ in runs.get(name, [])]


def slot_id(name: str, slot: datetime) -> str:
    return f"sched-{name}-{slot.isoformat()}"


def whole_second(when: datetime) -> datetime:
    return when.replace(microsecond=0)


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; runs: {runs}")
        await asyncio.sleep(0.02)


def schedule_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("dbos_async schedule") and not t.done()
    ]


def every_second_workflow(name: str) -> Callable[..., Any]:
    @DBOS.scheduled(EVERY_SECOND)
    @DBOS.workflow(name=name)
    async def wf(scheduled_time: datetime, actual_time: datetime) -> str:
        record(name, scheduled_time, actual_time)
        return scheduled_time.isoformat()

    return wf


# -- the loop ------------------------------------------------------------------------


async def test_scheduled__every_second_fires_once_per_slot(url: str) -> None:
    name = "ts_every_second"
    every_second_workflow(name)
    before_launch = datetime.now(UTC)
    await launch(url)
    assert len(schedule_tasks()) == 1
    await wait_until(lambda: len(slots(name)) >= 3, "three slots")

    seen = slots(name)
    assert len(seen) == len(set(seen)), f"a slot ran twice: {seen}"
    # Slots are whole UTC seconds, consecutive (one per second, none skipped, none
    # doubled), the first one after launch; each ran at or after its slot (how long
    # after depends on the load, so it is not bounded).
    for scheduled_time, actual_time, _ in runs[name]:
        assert scheduled_time.tzinfo is not None and actual_time.tzinfo is not None
        assert scheduled_time.utcoffset() == timedelta(0)
        assert actual_time.utcoffset() == timedelta(0)
        assert scheduled_time.microsecond == 0
        assert scheduled_time <= actual_time, (scheduled_time, actual_time)
    ordered = sorted(seen)
    assert ordered == [ordered[0] + k * SECOND for k in range(len(ordered))], ordered
    assert before_launch < ordered[0], (before_launch, ordered)

    # Each slot is a SUCCESS workflow under its derived ID, with the slot as its input.
    for slot in ordered:
        wid = slot_id(name, slot)
        handle = await DBOS.retrieve_workflow(wid)
        assert await handle.get_result() == slot.isoformat()
        st = await DBOS.get_workflow_status(wid)
        assert st is not None
        assert st.status == WorkflowStatusString.SUCCESS
        assert st.name == name
        assert st.input is not None and st.input["args"][0] == slot
    # The database holds no workflow of that name except these (and perhaps newer slots
    # that started after the snapshot).
    listed = await DBOS.list_workflows(name=name)
    listed_ids = {st.workflow_id for st in listed}
    expected_ids = {slot_id(name, s) for s in ordered}
    assert expected_ids <= listed_ids
    for extra in listed_ids - expected_ids:
        extra_slot = datetime.fromisoformat(extra.removeprefix(f"sched-{name}-"))
        assert extra_slot > ordered[-1], extra


async def test_scheduled__destroy_stops_the_loop(url: str) -> None:
    name = "ts_stops"
    every_second_workflow(name)
    await launch(url)
    await wait_until(lambda: len(slots(name)) >= 1, "a first slot")
    await DBOS.destroy()
    destroyed_at = datetime.now(UTC)
    assert schedule_tasks() == []
    await asyncio.sleep(1.5)
    late = [s for s in slots(name) if s > destroyed_at]
    assert late == [], f"slots fired after destroy at {destroyed_at}: {late}"
    assert schedule_tasks() == []


async def test_scheduled__missed_slots_are_not_backfilled(url: str) -> None:
    name = "ts_no_backfill"
    every_second_workflow(name)
    await launch(url)
    await wait_until(lambda: len(slots(name)) >= 1, "a slot before the restart")
    # A grace period lets the slot that is running finish: with none, destroy hands it
    # over PENDING and the relaunch recovers it, running its body (which records the
    # slot outside any step) a second time, as recovery should.
    await DBOS.destroy(workflow_completion_timeout_sec=10)
    stopped_at = datetime.now(UTC)
    await asyncio.sleep(2.0)
    relaunch_at = datetime.now(UTC)
    await launch(url)
    await wait_until(lambda: any(s > relaunch_at for s in slots(name)), "a slot after the relaunch")

    seen = sorted(slots(name))
    assert len(seen) == len(set(seen)), seen
    last_before = max(s for s in seen if s <= stopped_at)
    first_after = min(s for s in seen if s > stopped_at)
    # The first slot after the relaunch is after it: none of the missed ones.
    assert relaunch_at < first_after, (relaunch_at, seen)
    gap = [last_before + k * SECOND for k in range(1, (first_after - last_before) // SECOND)]
    assert len(gap) >= 2, (last_before, first_after)
    for slot in gap:
        assert await DBOS.get_workflow_status(slot_id(name, slot)) is None, slot
    listed = {st.workflow_id for st in await DBOS.list_workflows(name=name)}
    assert not listed & {slot_id(name, s) for s in gap}, listed


# -- backfill --------------------------------------------------------------------------


async def test_backfill_schedule__runs_each_slot_of_start_end_once(url: str) -> None:
    name = "ts_backfill"
    body: Counter[datetime] = Counter()

    @DBOS.scheduled(EVERY_SECOND)
    @DBOS.workflow(name=name)
    async def wf(scheduled_time: datetime, actual_time: datetime) -> str:
        body[scheduled_time] += 1
        return f"ran {scheduled_time.isoformat()}"

    await launch(url)
    # A past range, before launch: the loop never runs these slots by itself.
    base = whole_second(datetime.now(UTC)) - timedelta(seconds=30)
    expected = [base, base + SECOND, base + 2 * SECOND]

    handles = await DBOS.backfill_schedule(wf, base, base + 3 * SECOND)
    assert [h.workflow_id for h in handles] == [slot_id(name, s) for s in expected]
    assert [await h.get_result() for h in handles] == [f"ran {s.isoformat()}" for s in expected]
    assert {s: body[s] for s in expected} == dict.fromkeys(expected, 1)
    # end is exclusive: base + 3 s did not run.
    assert body[base + 3 * SECOND] == 0
    assert await DBOS.get_workflow_status(slot_id(name, base + 3 * SECOND)) is None
    assert await DBOS.get_workflow_status(slot_id(name, base - SECOND)) is None
    for s in expected:
        st = await DBOS.get_workflow_status(slot_id(name, s))
        assert st is not None and st.status == WorkflowStatusString.SUCCESS

    # Again: the same handles, and no slot runs twice.
    again = await DBOS.backfill_schedule(wf, base, base + 3 * SECOND)
    assert [h.workflow_id for h in again] == [h.workflow_id for h in handles]
    assert [await h.get_result() for h in again] == [f"ran {s.isoformat()}" for s in expected]
    assert {s: body[s] for s in expected} == dict.fromkeys(expected, 1)

    # An overlapping range starting mid-second: its first slot is the next whole second;
    # base + 2 s keeps its outcome, base + 3 s and base + 4 s run once.
    overlap = await DBOS.backfill_schedule(
        wf, base + timedelta(seconds=1, milliseconds=500), base + 5 * SECOND
    )
    overlap_slots = [base + k * SECOND for k in (2, 3, 4)]
    assert [h.workflow_id for h in overlap] == [slot_id(name, s) for s in overlap_slots]
    for h in overlap:
        await h.get_result()
    assert {s: body[s] for s in [base + k * SECOND for k in range(5)]} == {
        base + k * SECOND: 1 for k in range(5)
    }

    # An empty range runs nothing.
    assert await DBOS.backfill_schedule(wf, base, base) == []
    assert await DBOS.backfill_schedule(wf, base + SECOND, base) == []
    assert sum(body[base + k * SECOND] for k in range(-1, 6)) == 5


async def test_backfill_schedule__slot_the_loop_ran_is_not_run_again(url: str) -> None:
    name = "ts_loop_then_backfill"
    body: Counter[datetime] = Counter()
    release = asyncio.Event()

    @DBOS.scheduled(EVERY_SECOND)
    @DBOS.workflow(name=name)
    async def wf(scheduled_time: datetime, actual_time: datetime) -> str:
        body[scheduled_time] += 1
        record(name, scheduled_time, actual_time)
        await asyncio.wait_for(release.wait(), 10)
        return f"done {scheduled_time.isoformat()}"

    await launch(url)
    await wait_until(lambda: len(slots(name)) >= 1, "the loop to start a slot")
    first = slots(name)[0]
    # While the loop's run of the slot is still in progress (PENDING) ...
    st = await DBOS.get_workflow_status(slot_id(name, first))
    assert st is not None and st.status == WorkflowStatusString.PENDING
    during = await DBOS.backfill_schedule(wf, first, first + SECOND)
    assert [h.workflow_id for h in during] == [slot_id(name, first)]
    await asyncio.sleep(0.1)
    assert body[first] == 1
    release.set()
    assert await during[0].get_result() == f"done {first.isoformat()}"
    # ... and after it ended.
    after = await DBOS.backfill_schedule(wf, first, first + SECOND)
    assert [h.workflow_id for h in after] == [slot_id(name, first)]
    assert await after[0].get_result() == f"done {first.isoformat()}"
    assert body[first] == 1
    st = await DBOS.get_workflow_status(slot_id(name, first))
    assert st is not None and st.status == WorkflowStatusString.SUCCESS
    assert all(n == 1 for n in body.values()), body


async def test_backfill_schedule__needs_a_scheduled_workflow(url: str) -> None:
    @DBOS.workflow(name="ts_unscheduled")
    async def plain(scheduled_time: datetime, actual_time: datetime) -> None:
        return None

    async def not_a_workflow(scheduled_time: datetime, actual_time: datetime) -> None:
        return None

    await launch(url)
    now = datetime.now(UTC)
    with pytest.raises(TypeError):
        await DBOS.backfill_schedule(plain, now - 3 * SECOND, now)
    with pytest.raises(TypeError):
        await DBOS.backfill_schedule(not_a_workflow, now - 3 * SECOND, now)
    assert await DBOS.list_workflows(name="ts_unscheduled") == []


# -- a failing slot ----------------------------------------------------------------------


async def test_scheduled__failing_slot_is_error_and_later_slots_fire(url: str) -> None:
    name = "ts_fails_once"

    @DBOS.scheduled(EVERY_SECOND)
    @DBOS.workflow(name=name)
    async def wf(scheduled_time: datetime, actual_time: datetime) -> str:
        record(name, scheduled_time, actual_time)
        if len(runs[name]) == 1:
            raise RuntimeError(f"boom at {scheduled_time.isoformat()}")
        return "ok"

    await launch(url)
    await wait_until(lambda: len(slots(name)) >= 3, "three slots")
    failed, *later = slots(name)[:3]

    handle = await DBOS.retrieve_workflow(slot_id(name, failed))
    with pytest.raises(RuntimeError, match=re.escape(f"boom at {failed.isoformat()}")):
        await handle.get_result()
    st = await DBOS.get_workflow_status(slot_id(name, failed))
    assert st is not None and st.status == WorkflowStatusString.ERROR
    assert isinstance(st.error, RuntimeError)

    assert later == [failed + SECOND, failed + 2 * SECOND]
    for slot in later:
        assert await (await DBOS.retrieve_workflow(slot_id(name, slot))).get_result() == "ok"
        st = await DBOS.get_workflow_status(slot_id(name, slot))
        assert st is not None and st.status == WorkflowStatusString.SUCCESS


# -- decoration errors (no database) -----------------------------------------------------


def test_scheduled__invalid_cron_is_a_config_error_at_decoration() -> None:
    for cron in ["61 * * * * *", "* * * *", "* * * * * * *", "", "*/0 * * * *", "x * * * *"]:
        with pytest.raises(DBOSConfigError) as info:

            @DBOS.scheduled(cron)
            @DBOS.workflow(name="ts_bad_cron")
            async def wf(scheduled_time: datetime, actual_time: datetime) -> None:
                return None

        assert repr(cron) in str(info.value), (cron, str(info.value))
        assert "ts_bad_cron" not in registry.schedules
    # The error comes from DBOS.scheduled(cron) itself, before any function is given.
    with pytest.raises(DBOSConfigError, match="61"):
        DBOS.scheduled("61 * * * * *")


@pytest.mark.parametrize("cron", [None, 5, b"* * * * *", ["* * * * *"]])
def test_scheduled__non_str_cron_is_a_type_error(cron: Any) -> None:
    with pytest.raises(TypeError):
        DBOS.scheduled(cron)


def test_scheduled__needs_a_workflow() -> None:
    async def plain(scheduled_time: datetime, actual_time: datetime) -> None:
        return None

    with pytest.raises(TypeError, match="workflow"):
        DBOS.scheduled(EVERY_SECOND)(plain)

    @DBOS.step(name="ts_a_step")
    async def a_step(scheduled_time: datetime, actual_time: datetime) -> None:
        return None

    with pytest.raises(TypeError, match="workflow"):
        DBOS.scheduled(EVERY_SECOND)(a_step)
    assert not [n for n in registry.schedules if n.startswith(PREFIX)]


def test_scheduled__stacked_below_workflow_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="above"):

        @DBOS.workflow(name="ts_wrong_order")
        @DBOS.scheduled(EVERY_SECOND)
        async def wf(scheduled_time: datetime, actual_time: datetime) -> None:
            return None

    assert "ts_wrong_order" not in registry.schedules


def test_scheduled__signature_must_take_two_positional_datetimes() -> None:
    async def one(scheduled_time: datetime) -> None:
        return None

    async def three(scheduled_time: datetime, actual_time: datetime, extra: int) -> None:
        return None

    async def keyword_only(*, scheduled_time: datetime, actual_time: datetime) -> None:
        return None

    async def none() -> None:
        return None

    for i, func in enumerate([one, three, keyword_only, none]):
        wf = DBOS.workflow(name=f"ts_sig_bad_{i}")(func)
        with pytest.raises(TypeError, match=f"ts_sig_bad_{i}"):
            DBOS.scheduled(EVERY_SECOND)(wf)
        assert f"ts_sig_bad_{i}" not in registry.schedules

    # Signatures that can take them are accepted.
    async def defaults(a: datetime, b: datetime, extra: int = 0) -> None:
        return None

    async def star(*args: datetime) -> None:
        return None

    for i, func in enumerate([defaults, star]):
        wf = DBOS.workflow(name=f"ts_sig_ok_{i}")(func)
        assert DBOS.scheduled(EVERY_SECOND)(wf) is wf
        assert f"ts_sig_ok_{i}" in registry.schedules
