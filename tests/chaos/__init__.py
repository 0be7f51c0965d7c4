"""The chaos suite: a bank-transfer workload run by worker processes under injected faults
(``harness.py``; ``make chaos`` for the long runs, ``test_chaos.py`` for the short ones)."""
