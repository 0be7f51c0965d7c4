"""``dbos-async``: operate the workflows stored in a dbos_async database from a shell.

Commands::

    dbos-async workflow list [--status S]... [--name N] [--start-time T] [--end-time T]
                             [--queue Q] [--parent ID] [--limit N] [--offset N]
                             [--sort-desc] [--load-input] [--load-output]
    dbos-async workflow get ID
    dbos-async workflow steps ID
    dbos-async workflow cancel ID
    dbos-async workflow resume ID
    dbos-async workflow fork ID [--step N] [--application-version V]
    dbos-async queue list [--queue Q] [...the filters of workflow list]
    dbos-async executor list
    dbos-async schedule list [--status ACTIVE|PAUSED] [--workflow NAME] [--prefix TEXT]
    dbos-async schedule pause|resume|trigger|delete NAME
    dbos-async dashboard [--host H] [--port N] [--token T] [--show-values] [--refresh S]
    dbos-async migrate

Global options (before or after the command): ``--database-url URL`` (else the
``DBOS_DATABASE_URL`` environment variable), ``--system-database-url URL`` (defaults to the
database URL) and ``--json`` (machine-readable output on stdout). Errors print one line
starting with ``error:`` on stderr; the exit status is 1 for bad input or an unknown
workflow and 2 for a usage error. Also runnable as ``python -m dbos_async.cli``.
"""

from ._main import main

__all__ = ["main"]
