"""Prometheus metrics for the daemon, in a registry of its own.

A registry per daemon (not prometheus-client's global one) keeps tests and embedded use from
seeing each other's counters, and keeps library metrics we did not choose off `/metrics`.
The daemon feeds it from what the engine already reports: capture reports after each run, and
the delivery `on_outcome` hook for each row GA4 answered for.

Two histograms time the CRM change -> GA4: `ga4sync_freshness_seconds` over every sent row
(a first sync's history included, buckets up to a week), and `ga4sync_delivery_delay_seconds`
over the rows a live poll captured only, in buckets around poll intervals: the figure to hold
against `every` (the goal is p95 <= poll interval + 30 s).
"""

from __future__ import annotations

from datetime import datetime

from ga4sync.core.model import Status
from ga4sync.ga4.windows import classify_window
from ga4sync.pipeline.delivery import DeliveryReport
from ga4sync.pipeline.engine import CaptureReport
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.store import ClaimedRow
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FRESHNESS_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    6 * 3600.0,
    12 * 3600.0,
    24 * 3600.0,
    48 * 3600.0,
    72 * 3600.0,
    7 * 86400.0,
)
"""CRM change -> GA4 sent, in seconds: minutes matter for the daemon, 24 h and 72 h are GA4's
session-join and backdating limits."""

DELAY_BUCKETS = (
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    3 * 3600.0,
    12 * 3600.0,
    24 * 3600.0,
)
"""Live CRM move -> GA4's 2xx, in seconds: fine around poll intervals (`every: 15s` to `30m`),
then coarse up to a day (a stalled connector)."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OUTCOME_LABEL = {
    Status.SENT: "sent",
    Status.UNKNOWN: "unknown",
    Status.RETRY: "failed",
    Status.DEAD: "failed",
    Status.INVALID: "failed",
}
"""What GA4's answer means for a dashboard: it has it, it may have it, or it does not."""
NOT_SENT = "not_sent"
"""A request delivery decided not to start (the store stopped answering, or the rows' lease
ended): GA4 never saw it and the rows are queued again. Counted apart from `failed`, which is
GA4 (or the network) refusing a request that went out."""


class DaemonMetrics:
    """The daemon's counters and histograms; `render()` is the `/metrics` body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "ga4sync_runs",
            "Scheduled runs by connector and result.",
            ["connector", "result"],
            registry=r,
        )
        self.run_errors = Counter(
            "ga4sync_run_errors",
            "Runs that raised unexpectedly (the daemon went on).",
            ["connector"],
            registry=r,
        )
        self.last_success = Gauge(
            "ga4sync_last_success_timestamp_seconds",
            "When the connector's last successful run finished (Unix time).",
            ["connector"],
            registry=r,
        )
        self.transitions = Counter(
            "ga4sync_transitions_captured",
            "New stage transitions written to the outbox.",
            ["connector"],
            registry=r,
        )
        self.skipped = Counter(
            "ga4sync_transitions_skipped",
            "Captured transitions that will not be sent, by reason (no_client_id, too_old, ...).",
            ["connector", "reason"],
            registry=r,
        )
        self.crm_calls = Counter(
            "ga4sync_crm_api_calls", "Calls made to the CRM API.", ["connector"], registry=r
        )
        self.crm_remaining = Gauge(
            "ga4sync_crm_api_remaining",
            "Calls left in the CRM's daily API quota, as the CRM last reported it.",
            ["connector"],
            registry=r,
        )
        self.events = Counter(
            "ga4sync_events",
            "Events by outcome: sent, failed (retry/dead/refused), unknown, or not_sent (the "
            "request never started: the state store was down or the lease ended; queued again).",
            ["connector", "event", "outcome"],
            registry=r,
        )
        self.windows = Counter(
            "ga4sync_events_by_window",
            "Sent events by GA4 window: within_24h of the CRM change (can join the web "
            "session), within_72h (backdated), too_old (clamped to now-72h).",
            ["connector", "window"],
            registry=r,
        )
        self.ga4_latency = Histogram(
            "ga4sync_ga4_request_seconds",
            "Latency of requests to GA4's /mp/collect.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ga4_concurrency = Gauge(
            "ga4sync_ga4_concurrency_limit",
            "Requests to GA4 allowed in flight at once, as the last delivery left it (it "
            "moves between ga4.min_workers and ga4.max_workers with GA4's answers).",
            registry=r,
        )
        self.freshness = Histogram(
            "ga4sync_freshness_seconds",
            "Time from the CRM change to the event reaching GA4.",
            ["connector"],
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.delivery_delay = Histogram(
            "ga4sync_delivery_delay_seconds",
            "Time from a CRM stage move to GA4's 2xx for it, for moves a live poll captured "
            "(not a first sync of old history, not backfills): compare with the poll interval.",
            ["connector"],
            buckets=DELAY_BUCKETS,
            registry=r,
        )

    def record_capture(self, report: CaptureReport, *, finished_at: datetime) -> None:
        name = report.connector
        self.runs.labels(name, report.status).inc()
        self.transitions.labels(name).inc(report.captured)
        self.crm_calls.labels(name).inc(report.api_calls)
        if report.api_remaining is not None:
            self.crm_remaining.labels(name).set(report.api_remaining)
        for reason, count in report.skipped.items():
            self.skipped.labels(name, reason or "unknown").inc(count)
        if report.status == "ok":
            self.last_success.labels(name).set(finished_at.timestamp())

    def record_concurrency(self, limit: int) -> None:
        """Where the limit starts (`ga4.workers`): before the first delivery ends the gauge
        would read 0, which looks like GA4 pushing all the way back."""
        self.ga4_concurrency.set(limit)

    def record_delivery(self, report: DeliveryReport) -> None:
        if report.concurrency is not None:
            self.ga4_concurrency.set(report.concurrency)
        for seconds in report.latencies:
            self.ga4_latency.observe(seconds)

    def record_outcome(
        self, row: ClaimedRow, status: Status, outcome: SendOutcome | None, now: datetime
    ) -> None:
        """Delivery's `on_outcome` hook: one call per row of a finished request (or of one
        delivery decided not to start: `not_sent`)."""
        if outcome is not None and outcome.kind == "not_sent":
            label: str | None = NOT_SENT
        else:
            label = OUTCOME_LABEL.get(status)
        if label is None:
            return
        self.events.labels(row.connector, row.event_name or "", label).inc()
        if status == Status.SENT:
            age = (now - row.changed_at).total_seconds()
            self.freshness.labels(row.connector).observe(max(age, 0.0))
            if row.live:
                self.delivery_delay.labels(row.connector).observe(max(age, 0.0))
            self.windows.labels(row.connector, classify_window(row.changed_at, now).value).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
