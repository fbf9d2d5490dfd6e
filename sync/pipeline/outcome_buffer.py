"""Outcomes decided but not yet recorded, kept through a state store outage.

An answer GA4 gave is the one thing delivery cannot get again: dropping it when the store fails
(PostgreSQL restarting, a SQLite file locked by another program, a full disk) leaves the rows
`sending`, and the lease turns them `unknown` although GA4 has them; a person who resends then
duplicates them all. So answers stay here, sending stops (the caller checks `store_down`), and
recording is retried with backoff while the claim's lease still protects the rows. Only when
the lease is about to end does it give up, and then it names what it could not record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from ga4sync.core.clock import Clock
from ga4sync.state.errors import DatabaseError, driver_message
from ga4sync.state.store import Settlement, StateStore

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.2
RETRY_CAP_S = 5.0
LEASE_MARGIN = 0.1
"""Stop retrying when this share of the lease is left: a settle that lands after the lease
ended no longer matches (another sender may have taken the rows), so trying is pointless."""
SHOWN_KEYS = 20


class OutcomeBuffer:
    """Settlements waiting for the store; thread-safe where workers touch it (`went_down`)."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        lease: timedelta,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lease_s = lease.total_seconds()
        self.sleep = sleep
        self.store_down = threading.Event()
        """Set while the store does not answer: claim nothing, send nothing new."""
        self._waiting: list[Settlement] = []
        self._given_up: list[Settlement] = []
        self._deadlines: dict[str, float] = {}
        self._last_error = ""

    def claimed(self, claim_token: str) -> None:
        """A claim was committed now: its rows are ours until (about) one lease from now."""
        self._deadlines[claim_token] = time.monotonic() + self.lease_s * (1 - LEASE_MARGIN)

    def went_down(self, exc: DatabaseError) -> None:
        if not self.store_down.is_set():
            log.warning(
                "the state database stopped answering (%s): sending paused, outcomes kept "
                "in memory until they are recorded",
                driver_message(exc),
            )
        self._last_error = driver_message(exc)
        self.store_down.set()

    def waiting(self) -> bool:
        return bool(self._waiting)

    def record(self, settlements: Sequence[Settlement], now: datetime) -> None:
        """Record now, or keep them for `record_until_lease_ends` if the store is down."""
        self._waiting.extend(settlements)
        if self._waiting and not self.store_down.is_set():
            self._flush(now)

    def record_until_lease_ends(self) -> bool:
        """Retry with backoff; True once everything waiting is recorded, False when the leases
        of what is left ran out first (those are then in `unrecorded_answers`)."""
        delay = FIRST_RETRY_S
        while self._waiting:
            now_mono = time.monotonic()
            expired = [st for st in self._waiting if self._deadline(st) <= now_mono]
            if expired:
                self._given_up.extend(expired)
                self._waiting = [st for st in self._waiting if self._deadline(st) > now_mono]
                if not self._waiting:
                    return False
            next_deadline = min(self._deadline(st) for st in self._waiting)
            self.sleep(max(0.0, min(delay, next_deadline - time.monotonic())))
            delay = min(delay * 2, RETRY_CAP_S)
            if self._flush(self.clock.now()):
                log.warning("the state database answers again: recorded the kept outcomes")
        self.store_down.clear()
        return True

    def unrecorded_answers(self) -> list[str]:
        """Keys whose request reached GA4 (it answered, or may have) but are not recorded."""
        return [st.key for st in self._given_up if st.attempted]

    def describe_loss(self) -> str:
        """What a person must know: which rows will show `unknown` although GA4 answered."""
        answered = [st for st in self._given_up if st.attempted]
        by_status = Counter(st.status.value for st in answered)
        accepted = [st.key for st in answered if st.status.value == "sent"]
        shown = ", ".join(accepted[:SHOWN_KEYS]) + (" ..." if len(accepted) > SHOWN_KEYS else "")
        parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        return (
            f"the state database stopped answering ({self._last_error}) and was not back before "
            f"the lease ended: {len(answered)} outcome(s) GA4 already answered could not be "
            f"recorded ({parts}). Those rows will show as `unknown` once their lease ends. "
            f"GA4 accepted {len(accepted)} of them: do not resend these"
            + (f" ({shown})" if accepted else "")
            + "; every key is in the log"
        )

    def _deadline(self, st: Settlement) -> float:
        return self._deadlines.get(st.claim_token, 0.0)

    def _flush(self, now: datetime) -> bool:
        try:
            self.store.settle(self._waiting, now)
        except DatabaseError as exc:
            self.went_down(exc)
            return False
        self._waiting = []
        return True

    def log_loss(self) -> None:
        answered = [st for st in self._given_up if st.attempted]
        if answered:
            log.error(
                "%s. Keys: %s",
                self.describe_loss(),
                ", ".join(f"{st.key}={st.status.value}" for st in answered),
            )
