"""Which OS process this is, and whether another process on this machine still runs.

A lease names its process by host name, PID and the PID's start time (Linux: field 22 of
``/proc/PID/stat``, in clock ticks since boot), so a process that took over a dead one's
PID (a container restarted as PID 1, say) is not mistaken for it. Where there is no
``/proc`` the start time is None and the PID alone decides.
"""

from __future__ import annotations

import os
import socket

__all__ = ["hostname", "pid_alive", "pid_start"]


def hostname() -> str:
    return socket.gethostname()


def pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` (opaque text), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this machine still runs and is the one that started at
    ``start`` (when both are known)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if start is None:
        return True
    now = pid_start(pid)
    return now is None or now == start
