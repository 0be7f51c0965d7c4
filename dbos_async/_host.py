"""Which OS process this is, and whether another process of this machine still runs.

A lease names its process by host name, PID and a tag: the machine's boot ID, the PID
namespace and the PID's start time (Linux: ``/proc``). A process judges another one dead
only if both tags say they share a boot and a PID namespace (a host name alone does not:
containers in one pod, or machines all named ``localhost``, share one), its PID is gone
or now belongs to a process that started at another time (a PID reused, say by a
container restarted as PID 1). Without ``/proc`` there is no tag, and no process is ever
judged dead this way: its lease has to expire.
"""

from __future__ import annotations

import os
import socket

__all__ = ["hostname", "pid_alive", "process_tag"]


def hostname() -> str:
    return socket.gethostname()


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace").strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22: start time, in ticks


def _space() -> str | None:
    """This machine's boot and this process's PID namespace."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return None if boot is None else f"{boot}/{namespace}"


def process_tag(pid: int) -> str | None:
    """``boot/namespace:start time`` of process ``pid`` of this PID namespace, or None if
    unknown."""
    space = _space()
    start = _start_time(pid)
    if space is None or start is None:
        return None
    return f"{space}:{start}"


def pid_alive(pid: int, tag: str | None) -> bool:
    """False only if process ``pid`` with ``tag`` is surely gone: it shared this boot and
    PID namespace, and its PID is free or taken by a process that started later."""
    space = _space()
    if tag is None or space is None or pid <= 0:
        return True
    their_space, _, start = tag.rpartition(":")
    if their_space != space:
        return True  # another machine, container or boot: no way to tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return _start_time(pid) == start
