"""docs/migrating.md's table of DBOS Transact's public names stays true: every name of
DBOS Transact's ``dbos`` package and ``DBOS`` class (at the DBOS commit the page names)
has a row, and a row saying ``yes`` or ``differs`` names something ``dbos_async`` has,
one saying ``no`` something it has not (so adding a feature means updating the page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dbos_async
from dbos_async import DBOS

PAGE = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"


def _words(text: str) -> list[str]:
    return text.split()


#: DBOS Transact's ``DBOS`` members (public methods and class properties), without the
#: ``X_async`` twins of a method ``X``, at DBOS commit 6bc3032f.
DBOS_MEMBERS = _words("""
alert_handler application_version apply_schedules assumed_role asyncio_wait
authenticated_roles authenticated_user backfill_schedule cancel_workflow cancel_workflows
close_stream create_schedule dbos_class default_required_roles delete_queue
delete_schedule delete_workflow delete_workflows deprecate_patch destroy enqueue_workflow
enqueue_workflow_with_options executor_id fork_workflow get_all_events get_event
get_latest_application_version get_result get_schedule get_workflow_status
kafka_consumer launch list_application_versions list_queued_workflows list_queues
list_schedules list_workflow_steps list_workflows listen_queues logger patch
pause_schedule read_stream read_stream_offset recv register_instance register_queue
required_roles reset_system_database resume_schedule resume_workflow resume_workflows
retrieve_queue retrieve_workflow run_step scheduled send send_bulk set_authentication
set_event set_latest_application_version set_workflow_delay sleep span sql_session
start_workflow step step_id step_status tracer transaction trigger_schedule
update_workflow_attributes wait_first workflow workflow_id write_stream
""")

#: DBOS Transact's ``dbos.__all__`` at the same commit.
DBOS_EXPORTS = _words("""
AsyncSQLAlchemyDatasource ClientScheduleInput DBOS DBOSClient DBOSConfig
DBOSConfiguredInstance DBOSContextEnsure DBOSContextSetAuth DBOSPortableJSONSerializer
Debouncer DebouncerClient DuplicationPolicy EnqueueOptions KafkaMessage
PortableWorkflowError PropagateOtelContext Queue SQLAlchemyDatasource ScheduleInput
SendMessage Serializer SetEnqueueOptions SetWorkflowAttributes SetWorkflowID
SetWorkflowTimeout StepInfo StepOptions VersionInfo WorkflowHandle WorkflowHandleAsync
WorkflowSchedule WorkflowSerializationFormat WorkflowStatus WorkflowStatusString error
make_pydantic_args_validator pydantic_args_validator run_dbos_database_migrations
""")

ROW = re.compile(r"^\| `([\w.]+)` \| (yes|differs|no) \| (.*) \|$", re.MULTILINE)


def rows() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, status, _ in ROW.findall(PAGE.read_text()):
        assert name not in found, f"{name} has two rows"
        found[name] = status
    return found


def provided(name: str) -> bool:
    if name.startswith("DBOS."):
        member = name.removeprefix("DBOS.")
        return member in dir(DBOS) or member in dir(type(DBOS))
    return hasattr(dbos_async, name)


def test_migration_page__lists_every_dbos_name() -> None:
    expected = {f"DBOS.{m}" for m in DBOS_MEMBERS} | set(DBOS_EXPORTS)
    listed = set(rows())
    assert sorted(expected - listed) == [], "DBOS names without a row"
    assert sorted(listed - expected) == [], "rows for names DBOS does not have"


@pytest.mark.parametrize("name", sorted(rows()))
def test_migration_page__status_is_true(name: str) -> None:
    status = rows()[name]
    if status == "no":
        assert not provided(name), f"{name} is provided now: its row should say yes or differs"
    else:
        assert provided(name), f"{name} is not provided: its row should say no"
