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
"""

from __future__ import annotations

import os
import random
import sys

__all__ = ["ACTIVE", "ENV", "EXIT_STATUS", "POINTS", "hit", "parse"]

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
