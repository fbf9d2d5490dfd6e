"""What `run` did, as counts that add up, for a person (a table) or a script (`--format json`).

Per connector: seen = new + already in the outbox, and new = to send + skipped + invalid. A
malformed CRM record is one `invalid` row and is counted once (it was counted as invalid and
again as rejected before, so the columns added up to more than was seen). The GA4 line counts
the rows delivery settled in this run: this run's and those waiting from earlier runs.

The JSON keys are documented in README.md ("Scripts and cron jobs") and only ever added to.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ga4sync.cli.display import cell, printable
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.pipeline.delivery import DeliveryReport
from ga4sync.pipeline.engine import CaptureReport, RunReport
from ga4sync.pipeline.ga4_client import SendOutcome, resolve_base_url
from ga4sync.state.leases import HeldRows
from ga4sync.state.store import ClaimedRow
from pydantic import BaseModel

if TYPE_CHECKING:  # rich loads when a table is printed, not for `--format json`
    from rich.console import Console
    from rich.table import Table

CAPTURE_OK = ("ok", "locked", "stopped")


class CaptureSummary(BaseModel):
    connector: str
    status: str
    error: str | None
    seen: int
    new: int
    already_in_outbox: int
    to_send: int
    skipped: dict[str, int]
    invalid: int
    crm_calls: int
    warnings: list[str]


class DeliverySummary(BaseModel):
    sent: int
    retry: int
    unknown: int
    dead: int
    invalid: int
    skipped: int
    requests: int
    throttled: int = 0
    """Requests GA4 answered 429 (too many requests)."""
    concurrency: int | None = None
    """Requests allowed in flight at once when delivery ended (where the limit settled)."""


class Ga4Unreachable(BaseModel):
    """GA4 could not be reached at all for some requests (refused, DNS, TLS): none of their
    events left, they wait as `retry`."""

    endpoint: str
    detail: str
    failed_requests: int


class HeldByLease(BaseModel):
    """Rows another sender claimed (`sending`): a run elsewhere, or a killed run whose lease
    has not ended yet. This run leaves them alone; they come back when the lease ends."""

    connector: str
    rows: int
    first_back_at: datetime | None
    last_back_at: datetime | None


class RunSummary(BaseModel):
    ok: bool
    exit_code: int
    requeued_too_old: int
    captures: list[CaptureSummary]
    delivery: DeliverySummary
    ga4_unreachable: Ga4Unreachable | None
    too_old: int
    """Events skipped as older than GA4's 72 h window in this run (capture and delivery)."""
    held_by_lease: list[HeldByLease] = []
    """`sending` rows left after this run: claimed by another sender (or a killed run)."""


class UnreachableWatch:
    """Delivery's outcome hook: remembers requests that never reached GA4 (no HTTP answer and
    provably not sent), so `run` can say so in one line and exit non-zero."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = redact(resolve_base_url(endpoint))
        self.failed: set[int] = set()
        self.detail: str | None = None

    def __call__(self, _row: ClaimedRow, _status: Status, outcome: SendOutcome | None) -> None:
        if outcome is None or outcome.kind != "retry" or outcome.http_status is not None:
            return
        self.failed.add(id(outcome))  # one outcome per request, shared by its rows
        if self.detail is None:
            self.detail = outcome.detail

    def verdict(self) -> Ga4Unreachable | None:
        if self.detail is None:
            return None
        return Ga4Unreachable(
            endpoint=self.endpoint, detail=self.detail, failed_requests=len(self.failed)
        )


def capture_summary(c: CaptureReport) -> CaptureSummary:
    skipped = dict(sorted(Counter(c.skipped).items()))
    new = c.captured
    return CaptureSummary(
        connector=c.connector,
        status=c.status,
        error=c.error,
        seen=new + c.duplicates,
        new=new,
        already_in_outbox=c.duplicates,
        to_send=c.pending,
        skipped=skipped,
        invalid=c.invalid,
        crm_calls=c.api_calls,
        warnings=list(c.warnings),
    )


def delivery_summary(d: DeliveryReport) -> DeliverySummary:
    return DeliverySummary(
        sent=d.sent,
        retry=d.retry,
        unknown=d.unknown,
        dead=d.dead,
        invalid=d.invalid,
        skipped=d.skipped,
        requests=d.requests,
        throttled=d.throttled,
        concurrency=d.concurrency,
    )


def summarize_run(
    report: RunReport,
    unreachable: Ga4Unreachable | None,
    *,
    requeued_too_old: int = 0,
    held: Sequence[HeldRows] = (),
) -> RunSummary:
    captures = [capture_summary(c) for c in report.captures]
    delivery = delivery_summary(report.delivery)
    # Nothing could be delivered: cron and CI must notice, though the events are safe.
    cut_off = unreachable is not None and delivery.sent == 0
    ok = report.ok and not cut_off
    too_old = sum(c.skipped.get("too_old", 0) for c in captures) + delivery.skipped
    return RunSummary(
        ok=ok,
        exit_code=0 if ok else 1,
        requeued_too_old=requeued_too_old,
        captures=captures,
        delivery=delivery,
        ga4_unreachable=unreachable,
        too_old=too_old,
        held_by_lease=[HeldByLease(**asdict(h)) for h in held],
    )


def held_line(h: HeldByLease, now: datetime) -> str:
    when = ""
    if h.last_back_at is not None:
        wait = max(0, int((h.last_back_at - now).total_seconds()))
        when = (
            f"; they come back by {h.last_back_at.isoformat(timespec='seconds')} "
            f"(in {wait // 60}m {wait % 60:02d}s) when the lease ends"
        )
    return (
        f"held: {h.rows} rows of {h.connector} are held by another sender's lease (a run "
        f"still sending, or a killed one){when}: pending if their request never left, else "
        "unknown"
    )


def capture_table(captures: list[CaptureSummary]) -> Table:
    from rich.table import Table

    table = Table(title="Capture", title_justify="left")
    table.add_column("connector", no_wrap=True)
    # seen (= new + already) is in the JSON; one column less keeps the table in 80 columns.
    columns = ("result", "new", "already", "to send", "skipped", "invalid", "calls")
    for col in columns:
        table.add_column(col, no_wrap=True, justify="left" if col == "result" else "right")
    for c in captures:
        table.add_row(
            cell(c.connector),
            cell(c.status),
            str(c.new),
            str(c.already_in_outbox),
            str(c.to_send),
            str(sum(c.skipped.values())),
            str(c.invalid),
            str(c.crm_calls),
        )
    return table


def detail_lines(captures: list[CaptureSummary]) -> list[str]:
    """Errors, skip reasons and warnings: what a person acts on (no client id -> fix the form).
    CRM text, so shown literally (display.printable)."""
    lines = []
    for c in captures:
        name = printable(c.connector)
        if c.error:
            lines.append(f"{name} {c.status}: {printable(c.error)}")
        if c.skipped:
            reasons = ", ".join(f"{printable(k)} {v}" for k, v in c.skipped.items())
            lines.append(f"{name} skipped: {reasons}")
        for warning in c.warnings:
            lines.append(f"{name} warning: " + "\n  ".join(map(printable, warning.splitlines())))
    return lines


def delivery_line(d: DeliverySummary) -> str:
    return (
        f"GA4: sent {d.sent} in {d.requests} requests, retry {d.retry}, unknown {d.unknown}, "
        f"dead {d.dead}, invalid {d.invalid}, skipped {d.skipped}"
    )


def unreachable_line(u: Ga4Unreachable, delivered: int) -> str:
    what = "nothing was delivered" if delivered == 0 else f"{delivered} events were delivered"
    return (
        f"error: GA4 at {u.endpoint} could not be reached ({printable(u.detail)}); "
        f"{u.failed_requests} requests failed before sending and {what}. Their events wait as "
        "`retry` and go out on a later run once GA4 answers: check ga4.endpoint, the network "
        "and ga4.ca_file."
    )


def too_old_advice(count: int, clamp_command: list[str]) -> str:
    return (
        f"too_old {count}: older than GA4's 72 h backdating window, not sent. To send them at "
        "now-72h with the CRM time in `crm_changed_at` (those earlier runs skipped too), run:"
        "\n  " + shlex.join(clamp_command)
    )


def print_run(
    summary: RunSummary, console: Console, errors: Console, clamp_command: list[str]
) -> None:
    if summary.requeued_too_old:
        console.print(
            f"queued again {summary.requeued_too_old} events skipped as too_old by earlier "
            "runs, to send at now-72h",
            markup=False,
        )
    console.print(capture_table(summary.captures))
    for line in detail_lines(summary.captures):
        console.print(line, markup=False, highlight=False)
    console.print(delivery_line(summary.delivery), markup=False, highlight=False)
    if summary.too_old:
        console.print(
            too_old_advice(summary.too_old, clamp_command),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    now = datetime.now(UTC)
    for h in summary.held_by_lease:
        console.print(held_line(h, now), markup=False, highlight=False, soft_wrap=True)
    if summary.ga4_unreachable is not None:
        errors.print(
            unreachable_line(summary.ga4_unreachable, summary.delivery.sent),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
