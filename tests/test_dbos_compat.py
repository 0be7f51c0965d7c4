"""What code written for DBOS Transact reads (API.md section 11): ``DBOS.step_status``,
``DBOS.logger``, ``DBOS.span``, and ``StepInfo`` read as a mapping; on both backends."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dbos_async import DBOS, SetWorkflowID, StepInfo, StepStatus

seen: list[Any] = []


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
async def compat_flaky() -> str:
    status = DBOS.step_status
    seen.append(status)
    assert status is not None
    if status.current_attempt is not None and status.current_attempt < 2:
        raise RuntimeError(f"attempt {status.current_attempt} fails")
    return "third time lucky"


@DBOS.step()
def compat_plain_sync() -> Any:
    return DBOS.step_status


@DBOS.transaction()
async def compat_transaction() -> Any:
    return DBOS.step_status


@DBOS.workflow()
async def compat_workflow() -> list[Any]:
    in_workflow_code = DBOS.step_status
    flaky = await compat_flaky()
    plain = await compat_plain_sync()
    in_transaction = await compat_transaction()
    return [in_workflow_code, flaky, plain, in_transaction]


async def test_step_status__attempts_of_a_retried_step_and_plain_steps(dbos: DBOS) -> None:
    seen.clear()
    with SetWorkflowID("compat-status"):
        in_code, flaky, plain, in_transaction = await compat_workflow()
    assert in_code is None and in_transaction is None
    assert flaky == "third time lucky"
    assert seen == [StepStatus(1, 0, 3), StepStatus(1, 1, 3), StepStatus(1, 2, 3)]
    # (A plain ``def`` step runs in a worker thread: the status travels with it.)
    assert plain == StepStatus(2, None, None)
    assert DBOS.step_status is None  # outside workflows


async def test_step_info__reads_as_dbos_reads_it(dbos: DBOS) -> None:
    with SetWorkflowID("compat-info"):
        await compat_workflow()
    steps = await DBOS.list_workflow_steps("compat-info")
    first: StepInfo = steps[0]
    assert first["function_id"] == first.function_id == 1
    assert first["function_name"] == "compat_flaky"
    assert first["output"] == "third time lucky" and first["error"] is None
    assert "child_workflow_id" in first and "nope" not in first
    assert first.get("nope", 7) == 7
    assert dict(first.items())["function_id"] == 1
    assert first.keys()[:3] == ["function_id", "function_name", "output"]
    with pytest.raises(KeyError):
        first["nope"]


def test_logger__is_the_librarys_logger() -> None:
    assert isinstance(DBOS.logger, logging.Logger)
    assert DBOS.logger is logging.getLogger("dbos_async")
