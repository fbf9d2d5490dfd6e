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


@dataclass
class _Mark:
    keys: Sequence[str]
    claim_token: str
    done: bool = False
    held: bool = False
    error: DatabaseError | None = field(default=None)


class SendMarks:
    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._cond = threading.Condition()
        self._waiting: list[_Mark] = []
        self._writing = False

    def mark(self, keys: Sequence[str], claim_token: str) -> bool:
        """Block until this batch's mark is committed; False if its rows are no longer ours.

        Raises the store's error when the mark could not be written (then: do not send).
        """
        mine = _Mark(keys, claim_token)
        with self._cond:
            self._waiting.append(mine)
            while self._writing and not mine.done:
                self._cond.wait()
            if not mine.done:
                self._writing = True
                batch, self._waiting = self._waiting, []
        if not mine.done:
            self._write(batch, self.clock.now())
        if mine.error is not None:
            raise mine.error
        return mine.held

    def _write(self, batch: list[_Mark], now: datetime) -> None:
        try:
            held = self.store.mark_send_started([(m.keys, m.claim_token) for m in batch], now)
            for m, ok in zip(batch, held, strict=True):
                m.held = ok
        except DatabaseError as exc:
            for m in batch:
                m.error = exc
        finally:
            with self._cond:
                for m in batch:
                    m.done = True
                self._writing = False
                self._cond.notify_all()
