"""Failpoints: places where a test makes this process exit at once (``os._exit``), to
crash it at a precise moment of the durability protocol.

The environment variable ``DBOS_ASYNC_FAILPOINTS`` names the points, comma-separated,
each optionally with a probability: ``after_step_body,after_flush@0.05``. Read once, at
import; when it is unset ``ACTIVE`` is empty and a call site costs one truthiness test
(``if ACTIVE: hit("...")``). The points:

- ``after_step_body``: a step's body returned; its checkpoint is not yet written.
- ``before_flush``: the journal is about to commit a batch of checkpoint writes.
- ``after_flush``: a batch committed; its writers are not yet told.
- ``after_transaction_commit``: a transaction committed in the application database; its
  step row is not yet written.
- ``after_claim``: a queue worker's claim committed; the claimed workflows have not
  started.

The exit status is ``EXIT_STATUS`` (86), so a harness can tell a failpoint from a crash.

A second variable, ``DBOS_ASYNC_CRASH_AFTER_STEP=<step_id>:<workflow_id>``, kills the
process with SIGKILL (a real crash: no exit handler runs) the moment that step's
checkpoint is durable, before the workflow's next effect (its next step, transaction,
message or child) begins.
``dbos_async.testing.crash_and_recover`` sets it in the child process it crashes.
"""

from __future__ import annotations

import os
import random
import signal
import sys

__all__ = [
    "ACTIVE",
    "CRASH_AFTER",
    "CRASH_ENV",
    "ENV",
    "EXIT_STATUS",
    "POINTS",
    "hit",
    "parse",
    "parse_crash",
    "step_durable",
]

ENV = "DBOS_ASYNC_FAILPOINTS"
EXIT_STATUS = 86
POINTS = frozenset(
    {"after_step_body", "before_flush", "after_flush", "after_transaction_commit", "after_claim"}
)


def parse(text: str) -> dict[str, float]:
    """``name[@probability],...`` as {name: probability}; a clear error for a name that is
    no failpoint or a probability outside (0, 1]."""
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, chance = item.partition("@")
        if name not in POINTS:
            raise ValueError(
                f"{ENV}: unknown failpoint {name!r}; one of {', '.join(sorted(POINTS))}"
            )
        try:
            probability = float(chance) if chance else 1.0
        except ValueError:
            raise ValueError(f"{ENV}: {item!r}: the probability must be a number") from None
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"{ENV}: {item!r}: the probability must be in (0, 1]")
        points[name] = probability
    return points


#: The armed points and their probabilities; empty unless the variable is set.
ACTIVE: dict[str, float] = parse(os.environ.get(ENV, ""))


def hit(name: str) -> None:
    """Exit the process at once if ``name`` is armed (with its probability)."""
    probability = ACTIVE.get(name)
    if probability is not None and (probability >= 1.0 or random.random() < probability):
        sys.stderr.write(f"dbos_async failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_STATUS)


CRASH_ENV = "DBOS_ASYNC_CRASH_AFTER_STEP"


def parse_crash(text: str) -> tuple[str, int] | None:
    """``<step_id>:<workflow_id>`` as (workflow_id, step_id); None when empty."""
    if not text:
        return None
    step, sep, workflow_id = text.partition(":")
    if not sep or not workflow_id or not step.isdigit() or int(step) < 1:
        raise ValueError(
            f"{CRASH_ENV}: expected <step_id>:<workflow_id> with a step ID of 1 or more, "
            f"got {text!r}"
        )
    return workflow_id, int(step)


#: The (workflow ID, step ID) whose durable checkpoint kills this process, if any.
CRASH_AFTER: tuple[str, int] | None = parse_crash(os.environ.get(CRASH_ENV, ""))


def step_durable(workflow_id: str, step_id: int) -> None:
    """Called when a step's checkpoint is durable: SIGKILL this process if it is the step
    ``CRASH_AFTER`` names."""
    if (workflow_id, step_id) == CRASH_AFTER:
        sys.stderr.write(f"dbos_async: killing this process after step {step_id}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
