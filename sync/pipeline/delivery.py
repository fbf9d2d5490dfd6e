"""Deliver captured outbox rows to GA4 (DESIGN.md "Delivery semantics").

Rows are claimed (`sending`, with a lease) and committed before a request leaves, marked
"request started" by the worker right before it writes (send_marks.py), then settled by
outcome. Only marked rows can turn `unknown` after a crash; a failed write is `retry` or
`unknown` by whether the request was fully written (write_tracking.py); GA4's answers outlive a
state store outage (outcome_buffer.py). Validation runs again on the exact request body,
because a row can wait in `retry` until its timestamp falls out of GA4's 72 h window; for a row
capture validated and nothing changed since, only the rules that depend on the time and on the
grouping into requests run again (`validate_times`).

Sending is pipelined: the main thread claims, batches and settles while a pool of workers keeps
requests in flight over one keep-alive session. At 50 ms per request the bound is
workers / latency requests per second; stopping the senders while the database commits would
waste a large part of it. How many are in flight at once is not fixed: a gate that workers pass
before the "request started" mark lets through as many as the adaptive limit allows
(concurrency.py), which backs off on 429s, 5xx and rising latency and grows while latency holds.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ga4sync.core.clock import Clock, from_micros, to_micros
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status
from ga4sync.ga4.payload import Batch, build_batches
from ga4sync.ga4.rules import BACKDATE_WINDOW, validate_payload, validate_times
from ga4sync.pipeline.capture_feed import CaptureFeed, FeedState
from ga4sync.pipeline.concurrency import MAX_PAUSE_S, ConcurrencyLimit
from ga4sync.pipeline.concurrency_gate import Closed, ConcurrencyGate
from ga4sync.pipeline.delivery_policy import (
    DeliverySettings,
    OldEvents,
    backoff,
    resend_allowed,
    slow_down_seconds,
)
from ga4sync.pipeline.ga4_client import Ga4Client, SendOutcome
from ga4sync.pipeline.outcome_buffer import OutcomeBuffer
from ga4sync.pipeline.remote_check import RemoteCheckMemo, check_rules, describe_refusal
from ga4sync.pipeline.send_marks import SendMarks
from ga4sync.state.errors import DatabaseError, StateStoreError
from ga4sync.state.store import ClaimedRow, Settlement, StateStore

log = logging.getLogger(__name__)

__all__ = ["Delivery", "DeliveryReport", "DeliverySettings", "OldEvents", "OutcomeHook"]
CLAMP_MARGIN = timedelta(minutes=5)
SETTLE_EVERY_S = 0.05
"""Finished requests are settled together, at most this long after they finish: one commit per
few dozen requests instead of one per request. Rows stay `sending` until then, so a crash in
between leaves them `unknown`, never resent."""
FEED_WAIT_S = 0.5
"""With nothing in flight, how long to wait for the capture's next page before looking again
(a committed page wakes the wait at once; this only bounds a missed wake-up)."""
OutcomeHook = Callable[[ClaimedRow, Status, SendOutcome | None], None]
TOO_OLD_REASON = (
    "too_old: older than GA4's 72 h backdating window; `ga4sync run --old-events clamp` "
    "sends it at now-72h"
)


@dataclass
class DeliveryReport:
    sent: int = 0
    retry: int = 0
    unknown: int = 0
    dead: int = 0
    invalid: int = 0
    skipped: int = 0
    requests: int = 0
    remote_checks: int = 0
    throttled: int = 0
    """Requests GA4 answered 429 (too many requests)."""
    concurrency: int | None = None
    """Requests allowed in flight at once when the run ended (where the limit settled)."""
    sent_keys: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        for name in (
            "sent",
            "retry",
            "unknown",
            "dead",
            "invalid",
            "skipped",
            "requests",
            "remote_checks",
            "throttled",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.concurrency is not None:
            self.concurrency = other.concurrency
        self.sent_keys.extend(other.sent_keys)
        self.latencies.extend(other.latencies)

    def count(self, status: Status) -> None:
        if status.value in ("sent", "retry", "unknown", "dead", "invalid", "skipped"):
            setattr(self, status.value, getattr(self, status.value) + 1)


@dataclass
class _Flight:
    batch: Batch
    rows: list[ClaimedRow]


class Delivery:
    def __init__(
        self,
        store: StateStore,
        client: Ga4Client,
        clock: Clock,
        settings: DeliverySettings | None = None,
        on_outcome: OutcomeHook | None = None,
        rng: random.Random | None = None,
        remote_memo: RemoteCheckMemo | None = None,
        concurrency: ConcurrencyLimit | None = None,
        validated_since: datetime | None = None,
    ) -> None:
        """`concurrency`: the limit to start from and keep moving; pass the same one to each
        run of a long-lived process (the daemon) so what it learnt carries over.
        `validated_since`: rows captured from then on were checked by these very rules (the
        engine's start); only their time-dependent rules are checked again (default: now)."""
        self.store = store
        self.client = client
        self.clock = clock
        self.settings = settings or DeliverySettings()
        self.on_outcome = on_outcome
        self.rng = rng or random.Random()
        self.remote_memo = remote_memo if remote_memo is not None else RemoteCheckMemo()
        self._outcomes = OutcomeBuffer(store, clock, self.settings.lease)
        self._marks = SendMarks(store, clock)
        self._opened_at = validated_since if validated_since is not None else clock.now()
        """Rows captured since were validated by this process's rules (see `_ready`)."""
        self.concurrency = concurrency or ConcurrencyLimit(
            initial=self.settings.workers,
            minimum=min(self.settings.min_workers, self.settings.workers),
            maximum=max(self.settings.max_workers or 0, self.settings.workers),
        )
        self._gate = ConcurrencyGate(self.concurrency)

    def run(
        self,
        *,
        scope: str | None = None,
        connector: str | None = None,
        max_rounds: int | None = None,
        stop: threading.Event | None = None,
        feed: CaptureFeed | None = None,
    ) -> DeliveryReport:
        """Deliver everything due now; rows re-queued for later stay for a later run.

        `max_rounds` limits how many claims this call makes (a daemon tick, a test step).
        `stop` (SIGTERM) ends claiming; requests already in flight finish and are settled.
        `feed`: a capture is committing pages meanwhile; an empty claim waits for its next page
        and the call returns once the capture has finished and nothing is due.
        Raises `StateStoreError` when answers GA4 gave could not be recorded within the lease,
        naming them, after everything else is done.
        """
        report = DeliveryReport()
        self.store.expire_leases(self.clock.now())
        self._outcomes = OutcomeBuffer(self.store, self.clock, self.settings.lease)
        gate = self._gate = ConcurrencyGate(self.concurrency)
        threads = max(1, self.concurrency.maximum or 1)
        in_flight: dict[Future[SendOutcome], _Flight] = {}
        claims = 0
        exhausted = False
        awaiting: FeedState | None = None
        """The feed's state at an empty claim: claim again once a page came after it."""
        finished: list[tuple[_Flight, SendOutcome]] = []
        last_settle = time.monotonic()
        # Finished requests arrive here (a done-callback per future): O(1) per request, where
        # `concurrent.futures.wait` locks every pending future on each call.
        completed: queue.SimpleQueue[Future[SendOutcome]] = queue.SimpleQueue()
        outcomes = self._outcomes
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ga4send") as pool:
            while True:
                if awaiting is not None and feed is not None and feed.state() != awaiting:
                    awaiting = None
                # Keep a queue of about two requests per worker so no worker waits on the DB.
                while not exhausted and awaiting is None and not outcomes.store_down.is_set():
                    workers = gate.current
                    if len(in_flight) >= 2 * workers:
                        break
                    if (max_rounds is not None and claims >= max_rounds) or (
                        stop is not None and stop.is_set()
                    ):
                        exhausted = True
                        break
                    seen = feed.state() if feed is not None else None
                    # A claimed row waits in the queue under its lease: bound the queue so that
                    # even with every request hitting the read timeout a row is sent long
                    # before its lease ends.
                    claim_limit = min(self.settings.claim_size, workers * 8)
                    claimed = self._claim(scope, connector, claim_limit, bool(in_flight))
                    claims += 1
                    if claimed is None:
                        break  # the store stopped answering: settle what is out, then retry
                    if not claimed:
                        if seen is not None and not seen.finished:
                            awaiting = seen  # the capture is still paging
                        else:
                            exhausted = True
                        break
                    outcomes.claimed(claimed[0].claim_token)
                    self._open_client(claimed)
                    for flight in self._ready(claimed, pool, report):
                        future = pool.submit(self._send, flight)
                        in_flight[future] = flight
                        future.add_done_callback(completed.put)
                if not in_flight:
                    if finished:
                        self._settle_done(finished, report)
                        finished = []
                    if outcomes.waiting():
                        # Nothing is being sent: wait for the store, as long as the leases allow.
                        if not outcomes.record_until_lease_ends():
                            break
                        continue  # recorded: go on claiming (unless already done)
                    if awaiting is not None and feed is not None and not exhausted:
                        if stop is not None and stop.is_set():
                            break
                        feed.wait_past(awaiting, FEED_WAIT_S)
                        continue
                    break
                done = _take_completed(completed, SETTLE_EVERY_S)
                # A future cancelled by _hold_back reports here too, but has left in_flight.
                new = [(in_flight.pop(f), _result(f)) for f in done if f in in_flight]
                finished += new
                slow_down = slow_down_seconds(o for _, o in new)
                if slow_down is not None and slow_down > MAX_PAUSE_S and not exhausted:
                    # GA4 said "too many" for a long while (429, or 503 with Retry-After): stop
                    # claiming and put back what has not started, instead of collecting more
                    # refusals. A shorter pause the gate takes in its stride (concurrency.py).
                    exhausted = True
                    self._hold_back(in_flight, slow_down, report)
                if finished and (
                    len(finished) >= gate.current
                    or not in_flight
                    or time.monotonic() - last_settle >= SETTLE_EVERY_S
                ):
                    self._settle_done(finished, report)
                    finished, last_settle = [], time.monotonic()
        report.concurrency = gate.current
        if outcomes.unrecorded_answers():
            outcomes.log_loss()  # every key, for the person who has to sort them out
            raise StateStoreError(outcomes.describe_loss())
        return report

    def _claim(
        self, scope: str | None, connector: str | None, limit: int, busy: bool
    ) -> list[ClaimedRow] | None:
        """Claim due rows; None when the store failed while requests or answers are out
        (they must be settled first). With nothing out, the failure is the run's to report."""
        try:
            return self.store.claim_due(
                self.clock.now(),
                limit=limit,
                lease=self.settings.lease,
                scope=scope,
                connector=connector,
            )
        except DatabaseError as exc:
            if not busy and not self._outcomes.waiting():
                raise
            self._outcomes.went_down(exc)
            return None

    def _open_client(self, claimed: list[ClaimedRow]) -> None:
        """Open the GA4 session here, on the main thread, before any sender needs it.

        The client loads `requests` only now, so a run with nothing due never does. A URL it
        refuses is the run's ConfigError (on a sender it would be a failed send); the rows just
        claimed go back as due, unattempted, before it is raised.
        """
        try:
            self.client.open()
        except ConfigError:
            now = self.clock.now()
            self._outcomes.record(
                [
                    Settlement(
                        row.key,
                        row.claim_token,
                        Status.RETRY,
                        next_attempt_at=now,
                        reason="not sent: ga4.endpoint is not a usable URL",
                        attempted=False,
                    )
                    for row in claimed
                ],
                now,
            )
            raise

    def _send(self, flight: _Flight) -> SendOutcome:
        """On a worker: record "request started" for the batch, then send it.

        The mark is what lets a crash be told apart: an expired lease without it goes back to
        `pending`, because this request never left. If the mark cannot be written, or the rows
        are no longer ours, the request is not sent at all.
        """
        entered = self._gate.enter()
        if isinstance(entered, Closed):
            return SendOutcome("not_sent", entered.reason, retry_after=entered.wait_s)
        outcome = SendOutcome("not_sent", "not sent: the sender failed before the request")
        try:
            outcome = self._send_marked(flight)
        finally:
            self._gate.leave(entered, outcome)
        return outcome

    def _send_marked(self, flight: _Flight) -> SendOutcome:
        outcomes = self._outcomes
        if outcomes.store_down.is_set():
            return SendOutcome("not_sent", "not sent: the state store is not answering")
        token = flight.rows[0].claim_token
        try:
            ours = self._marks.mark(flight.batch.keys, token)
        except DatabaseError as exc:
            outcomes.went_down(exc)
            return SendOutcome("not_sent", "not sent: the state store is not answering")
        if not ours:
            return SendOutcome(
                "not_sent", "not sent: the lease on these rows ended and another sender has them"
            )
        return self.client.collect(flight.batch.body, flight.batch.data)

    def _hold_back(
        self,
        in_flight: dict[Future[SendOutcome], _Flight],
        wait_s: float,
        report: DeliveryReport,
    ) -> None:
        """Requests still queued (not started, so never sent) go back to `retry`."""
        now = self.clock.now()
        wait_for = max(timedelta(seconds=wait_s), backoff(1, self.settings, None, self.rng))
        reason = f"not sent: GA4 asked to slow down (Retry-After {wait_s:g} s)"
        # Workers already waiting at the gate have marked nothing: they give their rows back.
        self._gate.close(Closed(wait_for.total_seconds(), reason))
        held: list[Settlement] = []
        for future in list(in_flight):
            if not future.cancel():
                continue  # already running: its own outcome will settle it
            for row in in_flight.pop(future).rows:
                held.append(
                    Settlement(
                        row.key,
                        row.claim_token,
                        Status.RETRY,
                        next_attempt_at=now + wait_for,
                        reason=reason,
                        attempted=False,
                    )
                )
                report.count(Status.RETRY)
        self._outcomes.record(held, now)

    # -- before sending ----------------------------------------------------------------------
    def _ready(
        self, claimed: list[ClaimedRow], pool: ThreadPoolExecutor, report: DeliveryReport
    ) -> list[_Flight]:
        """Claimed rows -> requests to send; rows that must not go are settled right here."""
        now = self.clock.now()
        settlements: list[Settlement] = []
        ready: list[tuple[ClaimedRow, dict[str, Any]]] = []
        for row in claimed:
            prepared = self._prepare(row, now)
            if isinstance(prepared, Settlement):
                settlements.append(prepared)
            else:
                ready.append((row, prepared))
        if self.settings.validate_remote and ready:
            ready = self._check_remote(ready, pool, settlements, report)
        by_key = {row.key: row for row, _ in ready}
        # Rows this process's capture validated and nothing changed since (not clamped here):
        # only the rules that depend on now or on the grouping can fail; any other row (one an
        # older ga4sync captured may predate a rule) is checked in full.
        checked = {
            row.key
            for row, payload in ready
            if row.as_captured
            and row.created_at is not None
            and row.created_at >= self._opened_at
            and payload.get("event") is row.payload.get("event")
        }
        flights: list[_Flight] = []
        items = [(row.key, payload) for row, payload in ready]
        mode = self.settings.mode
        for batch in build_batches(items):
            if all(k in checked for k in batch.keys):
                problems = validate_times(batch.body, mode=mode, now=now, body_bytes=batch.size)
            else:
                problems = validate_payload(batch.body, mode=mode, now=now)
            if not problems:
                flights.append(_Flight(batch, [by_key[k] for k in batch.keys]))
                continue
            # Find the offending events one by one so the others still go.
            for key in batch.keys:
                single = build_batches([(key, p) for k, p in items if k == key])[0]
                own = validate_payload(single.body, mode=mode, now=now)
                if not own:
                    flights.append(_Flight(single, [by_key[key]]))
                    continue
                first = own[0]
                settlements.append(
                    Settlement(
                        key,
                        by_key[key].claim_token,
                        Status.INVALID,
                        reason=f"GA4 rule {first.validationCode} at "
                        f"{first.fieldPath or '(payload)'}: {first.description}",
                        attempted=False,
                    )
                )
        for st in settlements:
            report.count(st.status)
        self._outcomes.record(settlements, self.clock.now())
        return flights

    def _prepare(self, row: ClaimedRow, now: datetime) -> dict[str, Any] | Settlement:
        payload = dict(row.payload)
        event = dict(payload.get("event") or {})
        ts = event.get("timestamp_micros")
        if not event or not isinstance(ts, int):
            return Settlement(
                row.key,
                row.claim_token,
                Status.INVALID,
                reason="stored payload has no event",
                attempted=False,
            )
        oldest = now - BACKDATE_WINDOW
        if from_micros(ts) < oldest + timedelta(seconds=1):
            params = dict(event.get("params") or {})
            # `crm_changed_at` already stored: a person re-queued it clamped (requeue_too_old).
            if self.settings.old_events == "skip" and "crm_changed_at" not in params:
                return Settlement(
                    row.key,
                    row.claim_token,
                    Status.SKIPPED,
                    attempted=False,
                    reason=TOO_OLD_REASON,
                )
            params.setdefault("crm_changed_at", from_micros(ts).strftime("%Y-%m-%dT%H:%M:%SZ"))
            event["params"] = params
            event["timestamp_micros"] = to_micros(oldest + CLAMP_MARGIN)
            payload["event"] = event
        return payload

    def _check_remote(
        self,
        ready: list[tuple[ClaimedRow, dict[str, Any]]],
        pool: ThreadPoolExecutor,
        settlements: list[Settlement],
        report: DeliveryReport,
    ) -> list[tuple[ClaimedRow, dict[str, Any]]]:
        verdicts = check_rules(self.client, pool, ready, self.remote_memo)
        report.remote_checks += len(verdicts)
        now = self.clock.now()
        keep: list[tuple[ClaimedRow, dict[str, Any]]] = []
        for row, payload in ready:
            verdict = verdicts.get(row.key)
            if verdict is None or (verdict.refused is None and verdict.unreachable is None):
                keep.append((row, payload))
            elif verdict.refused is not None:
                reason = describe_refusal(row, verdict.refused)
                log.warning("outbox row %s: %s", row.key, reason)
                settlements.append(
                    Settlement(
                        row.key, row.claim_token, Status.INVALID, reason=reason, attempted=False
                    )
                )
            else:
                assert verdict.unreachable is not None
                outcome = replace(
                    verdict.unreachable,
                    kind="retry",
                    detail="GA4's validation server (--validate-remote) could not be asked: "
                    + verdict.unreachable.detail,
                )
                settlements.append(
                    replace(self._settle_for(row, outcome, None, now), attempted=False)
                )
        return keep

    # -- after sending -----------------------------------------------------------------------
    def _settle_done(
        self, finished: list[tuple[_Flight, SendOutcome]], report: DeliveryReport
    ) -> None:
        now = self.clock.now()
        settlements = []
        for flight, outcome in finished:
            report.requests += 1
            report.throttled += int(outcome.http_status == 429)
            report.latencies.append(outcome.latency_s)
            for row in flight.rows:
                st = self._settle_for(row, outcome, flight.batch.body, now)
                settlements.append(st)
                report.count(st.status)
                if st.status == Status.SENT:
                    report.sent_keys.append(row.key)
                if self.on_outcome:
                    self.on_outcome(row, st.status, outcome)
        self._outcomes.record(settlements, now)

    def _settle_for(
        self, row: ClaimedRow, outcome: SendOutcome, body: dict[str, Any] | None, now: datetime
    ) -> Settlement:
        st = Settlement(
            row.key,
            row.claim_token,
            Status.SENT,
            http_status=outcome.http_status,
            sent_payload=body,
        )
        if outcome.kind == "sent":
            return st
        if outcome.kind == "not_sent":
            return replace(
                st,
                status=Status.RETRY,
                # Held at the gate for a long Retry-After: due once it has passed.
                next_attempt_at=now + timedelta(seconds=outcome.retry_after or 0),
                reason=outcome.detail,
                attempted=False,
                http_status=None,
                sent_payload=None,
            )
        if outcome.kind == "rejected":
            return replace(st, status=Status.INVALID, reason=outcome.detail)
        if outcome.kind == "unknown":
            if resend_allowed(row) and row.attempts < self.settings.max_attempts:
                wait_for = backoff(row.attempts, self.settings, None, self.rng)
                return replace(
                    st,
                    status=Status.RETRY,
                    next_attempt_at=now + wait_for,
                    reason=f"{outcome.detail}; resending (purchase with "
                    "transaction_id, GA4 deduplicates)",
                )
            return replace(
                st,
                status=Status.UNKNOWN,
                reason=f"{outcome.detail}; GA4 may or may not have it: "
                "`ga4sync outbox resend` or `discard`",
            )
        if row.attempts >= self.settings.max_attempts:
            if resend_allowed(row):
                # This purchase may have been resent after an unknown outcome (or a crash), so
                # an earlier attempt may have reached GA4: `dead` would claim it never did.
                return replace(
                    st,
                    status=Status.UNKNOWN,
                    reason=f"gave up after {row.attempts} attempts (last: {outcome.detail}); "
                    "an earlier attempt may have reached GA4. Resending is safe: GA4 "
                    "deduplicates this purchase by transaction_id (`ga4sync outbox resend`)",
                )
            return replace(
                st,
                status=Status.DEAD,
                reason=f"gave up after {row.attempts} attempts; last: {outcome.detail}",
            )
        wait_for = backoff(row.attempts, self.settings, outcome.retry_after, self.rng)
        return replace(
            st,
            status=Status.RETRY,
            next_attempt_at=now + wait_for,
            reason=f"attempt {row.attempts}: {outcome.detail}"
            + (f" (Retry-After {outcome.retry_after:g} s)" if outcome.retry_after else ""),
        )


def _take_completed(
    completed: queue.SimpleQueue[Future[SendOutcome]], timeout: float
) -> list[Future[SendOutcome]]:
    """Every request finished so far, waiting up to `timeout` for the first one."""
    try:
        done = [completed.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            done.append(completed.get_nowait())
        except queue.Empty:
            return done


def _result(future: Future[SendOutcome]) -> SendOutcome:
    """A worker that died unexpectedly may have sent: that is `unknown`, never a retry."""
    try:
        return future.result()
    except BaseException as exc:  # noqa: BLE001 - classify, never lose the row
        return SendOutcome("unknown", f"sender failed: {type(exc).__name__}")
