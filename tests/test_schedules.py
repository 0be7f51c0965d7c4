"""Schedules stored as data (API.md section 6): ``DBOS.create_schedule`` and the calls that
manage them, in one process on both backends (across processes: test_schedule_processes).

Per-second schedules make these tests take a few seconds each; each waits for what it
needs and no more. Time-zone slots across daylight-saving changes are computed in
test_cron.py; here a zone's slots only need to reach the workflow on that zone's clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSConfigError,
    DBOSException,
    Queue,
    WorkflowStatusString,
    _scheduler,
)
from dbos_async._registry import registry

SECOND = timedelta(seconds=1)
EVERY_SECOND = "* * * * * *"

#: What the workflows below saw: schedule context "name" -> [(scheduled_at, context, now)].
runs: dict[str, list[tuple[datetime, Any, datetime]]] = {}
sched_queue = Queue("sch_queue")


@DBOS.workflow(name="sch_tick")
async def sch_tick(scheduled_at: datetime, context: Any) -> str:
    runs.setdefault(context["name"], []).append((scheduled_at, context, datetime.now(UTC)))
    return scheduled_at.isoformat()


@DBOS.workflow(name="sch_wrong_signature")
async def sch_wrong_signature(scheduled_at: datetime) -> None:
    return None


@DBOS.step(name="sch_a_step")
async def sch_a_step(scheduled_at: datetime, context: Any) -> None:
    return None


def slots(name: str) -> list[datetime]:
    return [s for s, _, _ in runs.get(name, [])]


def utc_slots(name: str) -> list[datetime]:
    return [s.astimezone(UTC) for s in slots(name)]


def slot_id(name: str, slot: datetime) -> str:
    return f"sched-{name}-{slot.astimezone(UTC).isoformat()}"


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; runs: {runs}")
        await asyncio.sleep(0.02)


def consecutive(seen: list[datetime]) -> bool:
    ordered = sorted(seen)
    return ordered == [ordered[0] + k * SECOND for k in range(len(ordered))]


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


@pytest.fixture
async def url(db_url: str) -> AsyncIterator[str]:
    """``db_url``, with no DBOS before and DBOS destroyed before the database is dropped."""
    await DBOS.destroy()
    try:
        yield db_url
    finally:
        await DBOS.destroy()


async def launch(db_url: str) -> None:
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


async def create(name: str, **options: Any) -> None:
    context = {"name": name, **options.pop("extra", {})}
    await DBOS.create_schedule(
        schedule_name=name,
        workflow_fn=sch_tick,
        schedule=options.pop("schedule", EVERY_SECOND),
        context=context,
        **options,
    )


# -- running ---------------------------------------------------------------------------


async def test_create_schedule__runs_each_slot_once_with_its_context(dbos: DBOS) -> None:
    name = "every-second"
    before = datetime.now(UTC)
    await create(name, extra={"n": 7}, cron_timezone="Europe/Berlin")
    await wait_until(lambda: len(slots(name)) >= 3, "three slots")

    seen = utc_slots(name)
    assert len(seen) == len(set(seen)) and consecutive(seen), seen
    assert before < seen[0]
    for scheduled_at, context, ran_at in runs[name]:
        assert context == {"name": name, "n": 7}
        assert scheduled_at.microsecond == 0 and scheduled_at <= ran_at
        # On the schedule's clock: Berlin's offset (+01:00 or +02:00), the same instant.
        assert scheduled_at.utcoffset() == ZoneInfo("Europe/Berlin").utcoffset(scheduled_at)
    for slot in seen:
        st = await DBOS.get_workflow_status(slot_id(name, slot))
        assert st is not None and st.name == "sch_tick" and st.queue_name is None
        result = await (await DBOS.retrieve_workflow(slot_id(name, slot))).get_result()
        assert datetime.fromisoformat(result) == slot

    info = await DBOS.get_schedule(name)
    assert info is not None
    assert info["schedule_name"] == name and info["workflow_name"] == "sch_tick"
    assert info["schedule"] == EVERY_SECOND and info["status"] == "ACTIVE"
    assert info["context"] == {"name": name, "n": 7}
    assert info["cron_timezone"] == "Europe/Berlin" and info["queue_name"] is None
    assert info["automatic_backfill"] is False
    assert info["last_fired_at"] is not None
    assert datetime.fromisoformat(info["last_fired_at"]) >= seen[0]
    assert [s["schedule_id"] for s in await DBOS.list_schedules()] == [info["schedule_id"]]
    assert await DBOS.get_schedule_async("nothing") is None


async def started(name: str) -> list[datetime]:
    """The slots of the schedule whose workflows were started, from the status table."""
    prefix = f"sched-{name}-"
    return sorted(
        datetime.fromisoformat(st.workflow_id.removeprefix(prefix))
        for st in await DBOS.list_workflows(name="sch_tick", load_input=False)
        if st.workflow_id.startswith(prefix) and "-trigger-" not in st.workflow_id
    )


async def test_pause_resume_trigger_delete(dbos: DBOS) -> None:
    name = "lifecycle"
    await create(name)
    await wait_until(lambda: len(slots(name)) >= 1, "a first slot")

    await DBOS.pause_schedule(name)
    paused_at = datetime.now(UTC)
    info = await DBOS.get_schedule(name)
    assert info is not None and info["status"] == "PAUSED"
    # A slot is started only if the schedule was active when its time came: none after.
    await asyncio.sleep(1.5)
    assert max(await started(name)) <= paused_at, "a paused schedule started a slot"

    # trigger runs it now, paused or not, under its own ID.
    handle = await DBOS.trigger_schedule(name)
    assert re.fullmatch(rf"sched-{name}-trigger-\d{{4}}-.*\+00:00", handle.workflow_id)
    at = datetime.fromisoformat(await handle.get_result())
    assert abs((at - datetime.now(UTC)).total_seconds()) < 5
    assert at in slots(name)
    assert max(await started(name)) <= paused_at

    resumed_at = datetime.now(UTC)
    await DBOS.resume_schedule(name)
    await wait_until(
        lambda: len([s for s in utc_slots(name) if s > resumed_at]) >= 2, "slots after the resume"
    )
    after = [s for s in await started(name) if s > paused_at]
    # From now on: none of the slots of the pause ran (no automatic_backfill).
    assert min(after) > resumed_at, (resumed_at, after)
    assert consecutive(after)

    await DBOS.delete_schedule(name)
    deleted_at = datetime.now(UTC)
    assert await DBOS.get_schedule(name) is None
    assert await DBOS.list_schedules() == []
    await asyncio.sleep(1.5)
    assert max(await started(name)) <= deleted_at, "a deleted schedule started a slot"
    # Its runs are kept; deleting again is nothing.
    assert await DBOS.get_workflow_status(handle.workflow_id) is not None
    await DBOS.delete_schedule(name)
    # The name is free again.
    await create(name, schedule="0 0 1 1 *")
    assert (await DBOS.get_schedule(name) or {}).get("schedule") == "0 0 1 1 *"


async def test_backfill_schedule__runs_exactly_the_missed_slots(dbos: DBOS) -> None:
    name = "backfill"
    body: Counter[datetime] = Counter()
    await create(name)
    await DBOS.pause_schedule(name)  # (only the backfill runs slots)
    base = datetime.now(UTC).replace(microsecond=0) - 30 * SECOND
    expected = [base + k * SECOND for k in range(3)]

    handles = await DBOS.backfill_schedule(name, base, base + 3 * SECOND)
    assert [h.workflow_id for h in handles] == [slot_id(name, s) for s in expected]
    assert [datetime.fromisoformat(await h.get_result()) for h in handles] == expected
    body.update(utc_slots(name))
    assert body == Counter(expected)

    # Again, and overlapping: slots that ran are not run again.
    again = await DBOS.backfill_schedule_async(name, base + SECOND, base + 5 * SECOND)
    for h in again:
        await h.get_result()
    assert [h.workflow_id for h in again] == [
        slot_id(name, base + k * SECOND) for k in (1, 2, 3, 4)
    ]
    assert Counter(utc_slots(name)) == Counter(base + k * SECOND for k in range(5))
    # Naive times are UTC; an empty range runs nothing.
    naive = base.replace(tzinfo=None)
    assert [h.workflow_id for h in await DBOS.backfill_schedule(name, naive, naive + SECOND)] == [
        slot_id(name, base)
    ]
    assert await DBOS.backfill_schedule(name, base, base) == []
    assert len(slots(name)) == 5
    with pytest.raises(DBOSException, match="'nothing' does not exist"):
        await DBOS.backfill_schedule("nothing", base, base + SECOND)


async def test_automatic_backfill__runs_the_slots_missed_while_nothing_ran(url: str) -> None:
    name = "auto-backfill"
    plain = "no-backfill"
    await launch(url)
    await create(name, automatic_backfill=True)
    await create(plain)
    await wait_until(lambda: len(slots(name)) >= 2 and len(slots(plain)) >= 2, "first slots")
    await DBOS.destroy(workflow_completion_timeout_sec=5)
    stopped, plain_stopped = max(utc_slots(name)), max(utc_slots(plain))
    await asyncio.sleep(2.5)
    relaunched = datetime.now(UTC)
    await launch(url)
    await wait_until(
        lambda: (
            any(s > relaunched for s in utc_slots(name))
            and any(s > relaunched for s in utc_slots(plain))
        ),
        "slots after the relaunch",
    )
    seen = utc_slots(name)
    assert len(seen) == len(set(seen)), seen
    missed = [s for s in seen if stopped < s < relaunched]
    assert len(missed) >= 2, (stopped, relaunched, seen)
    assert consecutive(seen), seen  # every slot of the gap, once
    # Without automatic_backfill, the slots of the gap are not run.
    assert [s for s in utc_slots(plain) if plain_stopped < s < relaunched] == []


async def test_create_schedule__queue_name_enqueues(dbos: DBOS) -> None:
    name = "queued"
    await create(name, queue_name="sch_queue")
    await wait_until(lambda: len(slots(name)) >= 1, "a slot")
    st = await DBOS.get_workflow_status(slot_id(name, utc_slots(name)[0]))
    assert st is not None and st.queue_name == "sch_queue"


async def test_client__manages_schedules_a_process_runs(dbos: DBOS, db_url: str) -> None:
    name = "from-client"
    async with DBOSClient(db_url) as client:
        await client.create_schedule(
            schedule_name=name,
            workflow_name="sch_tick",
            schedule=EVERY_SECOND,
            context={"name": name},
            cron_timezone="America/New_York",
        )
        await wait_until(lambda: len(slots(name)) >= 1, "a slot started by the process")
        [listed] = await client.list_schedules()
        assert listed["schedule_name"] == name and listed["cron_timezone"] == "America/New_York"
        assert await client.get_schedule(name) == await DBOS.get_schedule(name)
        await client.pause_schedule(name)
        info = await DBOS.get_schedule(name)
        assert info is not None and info["status"] == "PAUSED"
        # A client runs nothing: a triggered run is enqueued on the internal queue, and
        # the process runs it.
        handle = await client.trigger_schedule(name)
        await handle.get_result()
        st = await DBOS.get_workflow_status(handle.workflow_id)
        assert st is not None and st.status == WorkflowStatusString.SUCCESS
        assert st.queue_name == "_dbos_internal_queue"
        base = datetime.now(UTC).replace(microsecond=0) - 20 * SECOND
        filled = await client.backfill_schedule(name, base, base + 2 * SECOND)
        assert [h.workflow_id for h in filled] == [
            slot_id(name, base),
            slot_id(name, base + SECOND),
        ]
        for h in filled:
            await h.get_result()
        await client.resume_schedule(name)
        await client.delete_schedule(name)
        assert await DBOS.get_schedule(name) is None


async def test_poll__once_a_second_on_sqlite_rarely_where_changes_are_pushed(
    url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is read every second where nothing announces a change (SQLite), and
    only every ``PUSHED_POLL_INTERVAL_SECONDS`` (a safety net) on Postgres, where a
    change is announced: an idle fleet does not read it once a second per process."""
    from dbos_async._runtime import get_runtime

    await launch(url)
    sysdb = get_runtime().sysdb
    reads = 0
    original = sysdb.list_schedules

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(sysdb, "list_schedules", counted)
    await asyncio.sleep(3.2)
    # (at most 1 on Postgres: the first read, at launch, may start after the patch)
    if backend == "postgres":
        assert _scheduler.PUSHED_POLL_INTERVAL_SECONDS >= 5 and reads <= 1
    else:
        assert reads >= 2


async def test_client__a_change_is_heard_at_once_on_postgres(
    url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres a change from another process arrives by NOTIFY, not by the poll
    (made a minute long here); on SQLite only the poll finds it."""
    if backend != "postgres":
        pytest.skip("SQLite has no NOTIFY: its processes poll")
    monkeypatch.setattr(_scheduler, "POLL_INTERVAL_SECONDS", 60.0)
    monkeypatch.setattr(_scheduler, "PUSHED_POLL_INTERVAL_SECONDS", 60.0)
    await launch(url)
    name = "notified"
    async with DBOSClient(url) as client:
        await client.create_schedule(
            schedule_name=name,
            workflow_name="sch_tick",
            schedule=EVERY_SECOND,
            context={"name": name},
        )
        await wait_until(lambda: len(slots(name)) >= 1, "a slot", within=10)
        await client.pause_schedule(name)
        paused_at = datetime.now(UTC)
        await client.resume_schedule(name)
        await asyncio.sleep(1.5)
        assert [s for s in utc_slots(name) if s > paused_at], "the resume was not heard"


# -- listing and errors ----------------------------------------------------------------


async def test_list_schedules__filters(dbos: DBOS) -> None:
    for name in ("b-one", "a-two", "b-three"):
        await create(name, schedule="0 0 1 1 *")
    await DBOS.pause_schedule("b-three")
    names = [s["schedule_name"] for s in await DBOS.list_schedules()]
    assert names == ["a-two", "b-one", "b-three"]
    assert [s["schedule_name"] for s in await DBOS.list_schedules(status="PAUSED")] == ["b-three"]
    prefixed = await DBOS.list_schedules(schedule_name_prefix="b-", status="ACTIVE")
    assert [s["schedule_name"] for s in prefixed] == ["b-one"]
    assert await DBOS.list_schedules(workflow_name="other") == []
    assert len(await DBOS.list_schedules_async(workflow_name="sch_tick")) == 3
    with pytest.raises(ValueError, match="'RUNNING'"):
        await DBOS.list_schedules(status="RUNNING")


async def test_create_schedule__bad_input_is_a_clear_error(dbos: DBOS) -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a known IANA time zone"):
        await create("x", cron_timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="minute field '61'"):
        await create("x", schedule="61 * * * *")
    with pytest.raises(TypeError, match=r"@DBOS\.workflow"):
        await DBOS.create_schedule(schedule_name="x", workflow_fn=sch_a_step, schedule="* * * * *")
    with pytest.raises(
        TypeError, match=r"sch_wrong_signature.*\(scheduled_at: datetime, context\)"
    ):
        await DBOS.create_schedule(
            schedule_name="x", workflow_fn=sch_wrong_signature, schedule="* * * * *"
        )
    with pytest.raises(ValueError, match="schedule name"):
        await create("", schedule="0 0 1 1 *")
    assert await DBOS.list_schedules() == []

    await create("x", schedule="0 0 1 1 *")
    with pytest.raises(DBOSException, match="'x' already exists"):
        await create("x", schedule="0 0 1 1 *")
    for call in (DBOS.pause_schedule, DBOS.resume_schedule, DBOS.trigger_schedule):
        with pytest.raises(DBOSException, match="'y' does not exist"):
            await call("y")


# -- @DBOS.scheduled with a time zone ----------------------------------------------------


async def test_scheduled__cron_timezone(url: str) -> None:
    name = "sch_decorated_tz"
    seen: list[tuple[datetime, datetime]] = []

    @DBOS.scheduled(EVERY_SECOND, cron_timezone="Asia/Kolkata")
    @DBOS.workflow(name=name)
    async def decorated(scheduled_time: datetime, actual_time: datetime) -> None:
        seen.append((scheduled_time, actual_time))

    try:
        await launch(url)
        await wait_until(lambda: len(seen) >= 1, "a slot")
        scheduled_time, actual_time = seen[0]
        assert scheduled_time.utcoffset() == timedelta(hours=5, minutes=30)
        assert actual_time.utcoffset() == timedelta(0)
        st = await DBOS.get_workflow_status(slot_id(name, scheduled_time))
        assert st is not None
        # backfill_schedule takes the decorated workflow's name too.
        base = datetime.now(UTC).replace(microsecond=0) - 10 * SECOND
        [handle] = await DBOS.backfill_schedule(name, base, base + SECOND)
        assert handle.workflow_id == slot_id(name, base)
        # A stored schedule of that name would share its slots' workflow IDs: refused.
        with pytest.raises(DBOSException, match=f"{name!r} is the name of a @DBOS.scheduled"):
            await create(name)
        assert await DBOS.list_schedules() == []
    finally:
        await DBOS.destroy()
        registry.schedules.pop(name, None)
        registry.workflows.pop(name, None)

    with pytest.raises(DBOSConfigError, match="'Nowhere/Town'"):
        DBOS.scheduled(EVERY_SECOND, cron_timezone="Nowhere/Town")


@DBOS.workflow(name="sch_triggers_from_a_workflow")
async def sch_triggers_from_a_workflow(name: str) -> str:
    try:
        await DBOS.trigger_schedule(name)
    except DBOSException as exc:
        trigger_error = str(exc)
    now = datetime.now(UTC)
    try:
        await DBOS.backfill_schedule(name, now - SECOND, now)
    except DBOSException as exc:
        return f"{trigger_error} | {exc}"
    return "ran"


async def test_trigger_and_backfill__refused_in_a_workflow(dbos: DBOS) -> None:
    await create("in-wf", schedule="0 0 1 1 *")
    result = await sch_triggers_from_a_workflow("in-wf")
    assert "DBOS.trigger_schedule() cannot be called from a workflow" in result
    assert "DBOS.backfill_schedule() cannot be called from a workflow" in result
    assert slots("in-wf") == []
