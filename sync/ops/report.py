"""The figures of `ga4sync report --from --to`, read from the state store (read-only).

The period is whole UTC days, `--to` included. Sent events count on the day GA4 accepted them
(`sent_at`); skips and failures count rows captured in the period (`created_at`), by their
status now; failed attempts count on the day they were made. Freshness is CRM change -> GA4
sent for the events sent in the period. `report_html.py` draws these figures and embeds them
as JSON, so what the page shows and what a script reads are the same numbers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.ga4.windows import WINDOW_ORDER, Ga4Window, classify_window
from ga4sync.ops.status import percentile
from ga4sync.state.store import StateStore

FAILED_STATES = (Status.RETRY, Status.UNKNOWN, Status.DEAD, Status.INVALID)
LAG_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 1 min", 60.0),
    ("1-5 min", 300.0),
    ("5-15 min", 900.0),
    ("15-60 min", 3600.0),
    ("1-6 h", 6 * 3600.0),
    ("6-24 h", 24 * 3600.0),
    ("24-72 h", 72 * 3600.0),
    ("> 72 h", float("inf")),
)
"""Freshness histogram buckets: the daemon's minutes, then GA4's 24 h and 72 h limits."""


@dataclass(frozen=True)
class DayCount:
    day: str
    connector: str
    event: str
    count: int


@dataclass(frozen=True)
class ReasonCount:
    connector: str
    reason: str
    count: int


@dataclass(frozen=True)
class FailureCount:
    connector: str
    status: str
    count: int
    example: str
    """One row's reason, so a person sees what kind of failure it is."""


@dataclass(frozen=True)
class AttemptCount:
    day: str
    outcome: str
    http_status: int | None
    count: int


@dataclass
class FreshnessFigures:
    events: int = 0
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None
    histogram: dict[str, int] = field(default_factory=dict)


@dataclass
class ReportData:
    """Everything the report page shows; `to_json()` is what it embeds as `#report-data`."""

    period_from: str
    period_to: str
    generated_at: str
    days: list[str]
    totals: dict[str, int]
    events_per_day: list[DayCount]
    skips: list[ReasonCount]
    failures: list[FailureCount]
    failed_attempts: list[AttemptCount]
    freshness: FreshnessFigures
    freshness_by_connector: dict[str, FreshnessFigures]
    windows: dict[str, dict[str, int]]
    """connector -> window class -> sent events."""
    session_joinable: dict[str, int]
    value_totals: dict[str, float] = field(default_factory=dict)
    """Currency -> sum of the `value` param of the events sent in the period (`(none)` for
    values sent without a currency), so revenue reported to GA4 can be checked against the
    CRM's own totals."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00 UTC, the day after `end` 00:00 UTC): `--to` is a whole day, included."""
    return (
        datetime.combine(start, time(), tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC),
    )


def build_report(store: StateStore, start: date, end: date, now: datetime) -> ReportData:
    lo, hi = period_bounds(start, end)
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    per_day: Counter[tuple[str, str, str]] = Counter()
    lags: dict[str, list[float]] = defaultdict(list)
    windows: dict[str, Counter[str]] = defaultdict(Counter)
    joinable: Counter[str] = Counter()
    for row in store.iter_sent(lo, hi):
        per_day[(row.sent_at.date().isoformat(), row.connector, row.event_name or "")] += 1
        lags[row.connector].append(row.lag_s)
        window = classify_window(row.changed_at, row.sent_at)
        windows[row.connector][window.value] += 1
        if window is Ga4Window.WITHIN_24H and row.has_session:
            joinable[row.connector] += 1
    all_lags = [lag for values in lags.values() for lag in values]
    skips, failures, statuses = _captured(store, lo, hi)
    return ReportData(
        period_from=start.isoformat(),
        period_to=end.isoformat(),
        generated_at=ensure_utc(now).isoformat().replace("+00:00", "Z"),
        days=days,
        totals={
            "sent": sum(per_day.values()),
            **{st: statuses[st] for st in sorted(statuses)},
        },
        events_per_day=[DayCount(d, c, e, n) for (d, c, e), n in sorted(per_day.items())],
        skips=skips,
        failures=failures,
        failed_attempts=_attempts(store, lo, hi),
        freshness=_freshness(all_lags),
        freshness_by_connector={name: _freshness(v) for name, v in sorted(lags.items())},
        windows={
            name: {w.value: counts[w.value] for w in WINDOW_ORDER}
            for name, counts in sorted(windows.items())
        },
        session_joinable=dict(sorted(joinable.items())),
        value_totals=_value_totals(store, lo, hi),
    )


def _value_totals(store: StateStore, lo: datetime, hi: datetime) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for sent in store.iter_sent_values(lo, hi):
        if sent.value is not None:
            totals[sent.currency or "(none)"] += sent.value
    return {currency: round(total, 2) for currency, total in sorted(totals.items())}


def _freshness(values: list[float]) -> FreshnessFigures:
    ordered = sorted(values)
    histogram = dict.fromkeys((label for label, _ in LAG_BUCKETS), 0)
    for lag in ordered:
        for label, upper in LAG_BUCKETS:
            if lag < upper:
                histogram[label] += 1
                break
    return FreshnessFigures(
        events=len(ordered),
        p50_s=percentile(ordered, 50),
        p90_s=percentile(ordered, 90),
        p99_s=percentile(ordered, 99),
        max_s=ordered[-1] if ordered else None,
        histogram=histogram,
    )


def _captured(
    store: StateStore, lo: datetime, hi: datetime
) -> tuple[list[ReasonCount], list[FailureCount], Counter[str]]:
    """Rows captured in the period: skips by reason, failures by status, and status totals."""
    skips: Counter[tuple[str, str]] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    statuses: Counter[str] = Counter()
    for row in store.iter_outcomes(lo, hi):
        statuses[row.status] += 1
        if row.status == Status.SKIPPED.value:
            skips[(row.connector, (row.reason or "").split(":", 1)[0] or "(no reason)")] += 1
        elif row.status in FAILED_STATES:
            failures[(row.connector, row.status)] += 1
            examples.setdefault((row.connector, row.status), redact(row.reason or "")[:300])
    return (
        [ReasonCount(c, r, n) for (c, r), n in sorted(skips.items(), key=lambda kv: -kv[1])],
        [FailureCount(c, st, n, examples[(c, st)]) for (c, st), n in sorted(failures.items())],
        statuses,
    )


def _attempts(store: StateStore, lo: datetime, hi: datetime) -> list[AttemptCount]:
    """Attempts that did not end `sent`, per day, outcome and HTTP status."""
    counts: Counter[tuple[str, str, int | None]] = Counter()
    for attempt in store.iter_failed_attempts(lo, hi):
        counts[(attempt.attempted_at.date().isoformat(), attempt.outcome, attempt.http_status)] += 1
    return [
        AttemptCount(d, o, h, n)
        for (d, o, h), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]
