"""A dashboard for the workflows of a dbos_async database: an ASGI app (Starlette).

Mount it in a FastAPI or Starlette app that launched DBOS::

    app.mount("/dbos", dashboard_app())

or serve it alone with ``dbos-async dashboard --port 8000``. It needs the
``dashboard`` extra (``pip install 'dbos_async[dashboard]'``). See ``dashboard_app``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dbos_async.dashboard needs Starlette: pip install 'dbos_async[dashboard]'"
    ) from exc

from ._app import ENV_TOKEN, dashboard_app

__all__ = ["ENV_TOKEN", "dashboard_app"]
