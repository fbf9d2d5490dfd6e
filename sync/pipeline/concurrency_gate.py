"""The door every delivery worker passes before a request starts: at most `limit` at once.

The thread pool is sized to max_workers; this gate decides how many of those threads may
send at a time, and holds them back during a Retry-After pause. Workers pass it *before*
their batch is marked "request started" (send_marks.py): a worker waiting here has marked
nothing, so a run that ends or gives its rows back while workers wait strands no marked row.
Lowering the limit never interrupts a request: those in flight finish, and fewer start.

Waiting is real waiting, so it is measured on a monotonic clock (injectable); the rules that
move the limit (concurrency.py) take that time as an argument and stay pure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ga4sync.pipeline.concurrency import ConcurrencyLimit, classify
from ga4sync.pipeline.ga4_client import SendOutcome

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Closed:
    """The gate was closed for this run (GA4 asked for a long pause): do not send."""

    wait_s: float
    reason: str


class ConcurrencyGate:
    def __init__(
        self, limit: ConcurrencyLimit, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._time = monotonic
        self._cond = limit.lock  # shared by every gate of this limit
        self._closed: Closed | None = None

    def enter(self) -> int | Closed:
        """Wait for a free place (and for any pause to end); the ticket of this request."""
        with self._cond:
            while True:
                if self._closed is not None:
                    return self._closed
                now = self._time()
                if self.limit.may_start(now):
                    return self.limit.admit()
                if now < self.limit.paused_until:
                    self._cond.wait(self.limit.paused_until - now)
                else:
                    self._cond.wait()

    def leave(self, ticket: int, outcome: SendOutcome) -> None:
        """The request with `ticket` is answered (or was never written): update the limit."""
        with self._cond:
            before = self.limit.limit
            self.limit.observe(
                ticket,
                classify(outcome),
                outcome.latency_s,
                self._time(),
                outcome.retry_after,
            )
            change = self.limit.last_change
            if self.limit.limit != before and change is not None:
                log.info(
                    "sending up to %d requests at once (was %d): %s",
                    change.new,
                    change.old,
                    change.reason,
                )
            self._cond.notify_all()

    def close(self, closed: Closed) -> None:
        """Workers waiting at this gate (and arriving later) give up instead of sending; other
        runs sharing the limit are not closed, only woken."""
        with self._cond:
            self._closed = closed
            self._cond.notify_all()

    @property
    def current(self) -> int:
        with self._cond:
            return self.limit.limit
