"""Backfills: the daemon's pipeline over a fixed window, safe beside the daemon.

A backfill has its own watermark scope (`backfill:<from>:<to>`), so it never moves the
daemon's watermark and a re-run of the same window continues where an interrupted one
stopped. Outbox keys are the transition keys the daemon uses, so a transition the daemon
already captured is a duplicate here (not sent again), and one the backfill captured first is
a duplicate for the daemon. Each side delivers the rows of its own scope only: a backfill run
with `--old-events clamp` must not have its rows judged by a daemon that skips old events.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status, TimeWindow
from ga4sync.mapping.load import load_mapping
from ga4sync.pipeline.config import Config
from ga4sync.pipeline.delivery import OutcomeHook
from ga4sync.pipeline.engine import CaptureReport, CaptureTarget, Engine, PageHook
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.pipeline.plan import CapturePlan
from ga4sync.state.key_lookup import OutboxKeyLookup
from ga4sync.state.store import ClaimedRow, StateStore

log = logging.getLogger(__name__)

OldEvents = Literal["skip", "clamp"]
FAILED = (Status.RETRY, Status.DEAD, Status.INVALID, Status.UNKNOWN)
SAMPLE_SIZE = 20
DELIVERY_ROUNDS = 20
"""Claims per delivery slice (each up to 8 rows per GA4 worker): a delivery report keeps every
sent key, and a backfill of 200,000 rows must not hold them all (memory stays flat)."""


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Backfill windows stay inside these: no CRM holds history from before 2000, and dates near
year 1 or 9999 overflow as soon as an overlap or a day is added to them."""


def parse_when(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """`2026-11-20` (midnight UTC) or an ISO date-time; a time without a zone is UTC.

    With `end_of_day`, a bare date means the end of that day: `--from 2026-11-01 --to
    2026-11-07` is the whole first week, as people read it (and as `ga4sync report` does).
    An exact date-time is taken as it is, the end excluded.
    """
    outside = ConfigError(
        f"{option} `{text}` is outside the dates a backfill can cover, {EARLIEST.date()} to "
        f"{(LATEST - timedelta(days=1)).date()} (UTC); give a date in between"
    )
    try:
        if len(text) == 10:
            value = datetime.combine(datetime.fromisoformat(text).date(), time(), UTC)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise ConfigError(
            f"{option} `{text}` is not a date; write 2026-11-20 or 2026-11-20T13:00:00Z (UTC)"
        ) from None
    except OverflowError:  # a time zone offset moved it past year 1 or 9999
        raise outside from None
    if not EARLIEST <= value < LATEST:
        raise outside
    if end_of_day and len(text) == 10:
        value += timedelta(days=1)
    return value


def _label(value: datetime) -> str:
    if value.time() == time():
        return value.date().isoformat()
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_window(start: str, end: str) -> tuple[datetime, datetime]:
    """`--from`/`--to` as given on the command line -> the window [start, end) in UTC."""
    window = (
        parse_when(start, option="--from"),
        parse_when(end, option="--to", end_of_day=True),
    )
    if window[1] <= window[0]:
        raise ConfigError(
            f"--to ({end}) must be after --from ({start}); a bare date as --to includes that "
            "whole day, so --from 2026-11-01 --to 2026-11-01 is one day"
        )
    return window


@dataclass(frozen=True)
class BackfillRequest:
    connector: str
    start: datetime
    end: datetime
    old_events: OldEvents = "skip"

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ConfigError(
                f"--to ({_label(self.end)}) must be after --from ({_label(self.start)}): "
                "the window is [from, to)"
            )

    @property
    def scope(self) -> str:
        """The watermark and outbox scope: the same window always resumes the same backfill."""
        return f"backfill:{_label(self.start)}:{_label(self.end)}"

    @property
    def window(self) -> TimeWindow:
        return TimeWindow(start=self.start, end=self.end)

    def describe(self) -> str:
        return f"{self.connector} [{_label(self.start)}, {_label(self.end)})"


@dataclass
class BackfillSummary:
    """What a backfill's scope holds now, over every pass of the same window."""

    request: BackfillRequest
    captured: int = 0
    """New outbox rows this pass."""
    already: int = 0
    """Transitions already in the outbox (the daemon's or an earlier pass's): not sent again."""
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    waiting: int = 0
    """Rows still pending (an interrupted pass): the next pass delivers them."""
    capture_status: str = "ok"
    capture_error: str | None = None
    interrupted: bool = False
    """Ctrl-C/SIGTERM arrived, in capture or in delivery: the window is not finished."""

    @property
    def stopped(self) -> bool:
        return self.capture_status == "stopped" or self.interrupted

    @property
    def ok(self) -> bool:
        return self.capture_status in ("ok", "stopped") and not self.failed


def summarize(store: StateStore, summary: BackfillSummary) -> BackfillSummary:
    """Fill the counts from the outbox rows of this scope (streamed: backfills can be big)."""
    request = summary.request
    for row in store.iter_scope_outcomes(request.scope, request.connector):
        if row.status == Status.SENT:
            summary.sent += 1
        elif row.status == Status.SKIPPED:
            summary.skipped[(row.reason or "unknown").split(":", 1)[0]] += 1
        elif row.status in FAILED:
            summary.failed[row.status] += 1
        elif row.status in (Status.PENDING, Status.SENDING):
            summary.waiting += 1
    return summary


class Backfill:
    """Capture the window into its own scope and deliver that scope's rows, side by side."""

    def __init__(self, engine: Engine, request: BackfillRequest) -> None:
        self.engine = engine
        self.request = request

    def due_count(self) -> int:
        return self.engine.store.count_due(self.request.scope, self.request.connector)

    def run(
        self,
        *,
        on_page: PageHook | None = None,
        on_deliver: Callable[[int], None] | None = None,
        on_outcome: OutcomeHook | None = None,
    ) -> BackfillSummary:
        """The engine's pipelined pass over the window: delivery starts on the first
        committed page, so the first event goes while the CRM is still being read.

        `on_deliver` is called once the capture is over, with the rows GA4 answered for so
        far plus those still due: the whole of what this pass delivers (a progress bar's
        total). Delivery goes on after a CRM failure part-way (what was committed is sent);
        not when another process holds this backfill's lock (it delivers its own rows).
        """
        engine, request = self.engine, self.request
        answered = [0]

        def outcome(row: ClaimedRow, status: Status, sent: SendOutcome | None) -> None:
            answered[0] += 1
            if on_outcome is not None:
                on_outcome(row, status, sent)

        def captured(capture: CaptureReport) -> None:
            if on_deliver is not None and capture.status not in ("locked", "stopped"):
                on_deliver(answered[0] + self.due_count())

        report = engine.capture_and_deliver(
            [
                CaptureTarget(
                    request.connector, scope=request.scope, window=request.window, kind="backfill"
                )
            ],
            deliver_scope=request.scope,
            deliver_connector=request.connector,
            slice_rounds=DELIVERY_ROUNDS,
            deliver_if_locked=False,
            on_page=on_page,
            on_capture=captured,
            on_outcome=outcome,
        )
        if not report.captures:  # stopped before the capture began
            return self.summary(CaptureReport(request.connector, status="stopped"))
        return self.summary(report.captures[0])

    def summary(self, capture: CaptureReport) -> BackfillSummary:
        summary = BackfillSummary(
            self.request,
            captured=capture.captured,
            already=capture.duplicates,
            capture_status=capture.status,
            capture_error=capture.error,
            interrupted=self.engine.stop_event.is_set(),
        )
        return summarize(self.engine.store, summary)


# -- dry run --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WouldSend:
    record_id: str
    changed_at: datetime
    to_value: str
    event_name: str


@dataclass
class DryRunReport:
    request: BackfillRequest
    transitions: int = 0
    would_send: int = 0
    already: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    sample: list[WouldSend] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """The first few invalid rows' reasons: what to fix before the real run."""


def dry_run(config: Config, request: BackfillRequest, *, now: datetime) -> DryRunReport:
    """Read the CRM window and map it; write nothing, send nothing.

    Only reads the state store, to tell which transitions are already in the outbox; an
    absent SQLite file is not created. `once_per_record` is applied at capture, so a record
    that reached the same event twice in the window is counted twice here.
    """
    settings = config.connector(request.connector)
    mapping = load_mapping(str(config.resolve(settings.mapping)))
    existing = OutboxKeyLookup.open(config.state_url())
    report = DryRunReport(request)
    try:
        plan = CapturePlan.open(settings, mapping, base_dir=config.base_dir)
    except BaseException:
        existing.close()
        raise
    try:
        pages = plan.pages(
            request.window, now=lambda: now, scope=request.scope, old_events=request.old_events
        )
        for planned in pages:
            rows = planned.rows
            report.invalid += len(planned.rejected)
            known = existing.known([r.key for r in rows])
            for row in rows:
                report.transitions += 1
                if row.key in known:
                    report.already += 1
                elif row.status == Status.SKIPPED:
                    report.skipped[(row.reason or "").split(":", 1)[0]] += 1
                elif row.status == Status.INVALID:
                    report.invalid += 1
                    if len(report.reasons) < 5 and row.reason:
                        report.reasons.append(f"{row.record_id}: {row.reason}")
                else:
                    report.would_send += 1
                    if len(report.sample) < SAMPLE_SIZE:
                        report.sample.append(
                            WouldSend(
                                row.record_id, row.changed_at, row.to_value, row.event_name or ""
                            )
                        )
    finally:
        plan.close()
        existing.close()
    return report
