"""No system-database write from inside a ``@DBOS.transaction`` body.

A transaction body holds its database transaction open while it runs. A DBOS call that
writes to the system database from there (a message, an event, a stream value, a workflow
start or enqueue, a cancel, resume or fork) would, on SQLite, wait for the write lock its
own transaction holds, and on any backend would make the write durable before (or even
though) the transaction's own outcome is known. DBOS refuses ``set_event``/``send``
inside transactions; so do we, for every such call and on every backend, at once and
with a message saying what to do instead. Reads (``get_event``, ``get_workflow_status``,
...) stay allowed.
"""

from __future__ import annotations

from ._context import current_sql_connection
from ._errors import DBOSException

__all__ = ["refuse_in_transaction"]


def refuse_in_transaction(call: str) -> None:
    """Raise ``DBOSException`` if a transaction body is running here; ``call`` names the
    refused call as the user wrote it (``"DBOS.send()"``)."""
    if current_sql_connection.get() is not None:
        raise DBOSException(
            f"{call} cannot be used inside a @DBOS.transaction body: it writes to the "
            "system database, which must not happen while the transaction is open. "
            "Call it from the workflow after the transaction returns."
        )
