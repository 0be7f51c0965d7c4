"""What the bank workload (``bank_app.py``) and the harness both need to know."""

from __future__ import annotations

#: The application version every worker shares, so any of them may take over the others.
APP_VERSION = "chaos-bank-1"
QUEUE_NAME = "bank"
WORKFLOW_NAME = "bank_transfer"
#: The steps of a transfer, by step ID: what ``operation_outputs`` must hold, exactly.
STEP_NAMES = {1: "bank_debit", 2: "bank_effect", 3: "bank_credit"}
#: The steps that are transactions: what ``transaction_outputs`` must hold, exactly.
TRANSACTION_STEPS = (1, 3)
#: The exit status of a worker that a failpoint ended (``dbos_async._failpoints``).
FAILPOINT_EXIT = 86


def transfer_output(transfer_id: str, src: int, dst: int, amount: int) -> str:
    """What ``bank_transfer`` returns (the harness checks every output)."""
    return f"{transfer_id}:{src}->{dst}:{amount}"


def app_name(executor_id: str) -> str:
    """The Postgres ``application_name`` of a worker's connections."""
    return f"chaos-{executor_id}"
