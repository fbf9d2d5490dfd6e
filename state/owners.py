"""Which process owns a run, and whether that process is still there.

A run killed by SIGKILL (or a power cut) never writes its end: its `runs` row stays
`running`. Recording the owner lets `status` prove the process gone on this host: the pid no
longer exists, or it exists but started at another moment (the pid was reused). The start
moment comes from /proc (Linux); where there is none, a live pid counts as the owner.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessOwner:
    host: str
    pid: int
    started: str | None
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""

    @classmethod
    def current(cls) -> ProcessOwner:
        """This process (looked up once per pid: every committed page asks)."""
        return _owner_of(os.getpid())

    def is_gone(self) -> bool:
        """True only when provably gone: same host, and no process with this pid and start.

        A run on another host cannot be checked from here (its heartbeat can)."""
        if self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a process of another user has this pid: compare start times
        if self.started is None:
            return False
        now_started = process_start(self.pid)
        return now_started is not None and now_started != self.started


def process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot, or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


@functools.cache
def _owner_of(pid: int) -> ProcessOwner:
    return ProcessOwner(socket.gethostname(), pid, process_start(pid))
