"""Group commit of "request started" marks, so marking each request costs no commit of its own.

Each delivery worker must have its batch marked `send_started_at` (committed) right before
writing the request: that mark is what lets crash recovery put never-sent rows back to
`pending`. One commit per request would double the CPU per event and idle the senders on the
database. So workers hand their marks in here; whichever worker finds no write in progress
writes every mark waiting at that moment in one transaction, and the others wait for it (a
mark is never written before its own worker asked, so nothing is marked ahead of its request).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ga4sync.core.clock import Clock
from ga4sync.state.errors import DatabaseError
from ga4sync.state.store import StateStore


@dataclass(eq=False)
class _Mark:
    keys: Sequence[str]
    claim_token: str
    done: bool = False
    held: bool = False
    error: DatabaseError | None = field(default=None)
    wake: threading.Lock = field(default_factory=threading.Lock)
    """Held from creation; released exactly once: when the mark is written, or when this
    worker is to write the next group (a lock, not an Event: a tenth of the cost to make)."""


class SendMarks:
    """Each finished write wakes only the workers whose marks it wrote, and hands the writing
    to one waiting worker, if any: not every waiting worker (with 32 senders, a broadcast per
    commit was a large share of the delivery's interpreter time)."""

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: list[_Mark] = []
        self._writing = False

    def mark(self, keys: Sequence[str], claim_token: str) -> bool:
        """Block until this batch's mark is committed; False if its rows are no longer ours.

        Raises the store's error when the mark could not be written (then: do not send).
        """
        mine = _Mark(keys, claim_token)
        mine.wake.acquire()
        with self._lock:
            self._waiting.append(mine)
            leading = not self._writing
            self._writing = True
        if not leading:
            mine.wake.acquire()  # written by another worker, or handed the writing
        if not mine.done:
            with self._lock:
                batch, self._waiting = self._waiting, []
            self._write(batch, mine, self.clock.now())
        if mine.error is not None:
            raise mine.error
        return mine.held

    def _write(self, batch: list[_Mark], mine: _Mark, now: datetime) -> None:
        try:
            held = self.store.mark_send_started([(m.keys, m.claim_token) for m in batch], now)
            for m, ok in zip(batch, held, strict=True):
                m.held = ok
        except DatabaseError as exc:
            for m in batch:
                m.error = exc
        finally:
            with self._lock:
                for m in batch:
                    m.done = True
                # Marks that came in meanwhile: the first of them writes them all next.
                following = self._waiting[0] if self._waiting else None
                self._writing = following is not None
            for m in batch:
                if m is not mine:
                    m.wake.release()
            if following is not None:
                following.wake.release()
