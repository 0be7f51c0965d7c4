"""``python -m dbos_async.cli``: the ``dbos-async`` command."""

from . import main

raise SystemExit(main())
