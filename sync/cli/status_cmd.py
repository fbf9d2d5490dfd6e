"""`ga4sync status [--format table|json]`: how each connector is doing, from the state store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click
from ga4sync.cli.common import console, open_config
from ga4sync.cli.display import cell, printable
from ga4sync.core.clock import SystemClock
from ga4sync.ga4.windows import WINDOW_ORDER
from ga4sync.ops.status import ConnectorStatus, StatusReport, build_status
from ga4sync.state.store import StateStore
from rich.table import Table
from rich.text import Text

QUEUE_COLUMNS = ("pending", "sending", "retry", "unknown", "dead", "invalid", "skipped", "sent")


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, or JSON for scripts and monitoring.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1, max=3650),
    default=7,
    show_default=True,
    help="Period for freshness, GA4 windows and the client-id match rate.",
)
@click.pass_context
def status(ctx: click.Context, fmt: str, days: int) -> None:
    """Last run, result, freshness, queue, CRM API usage, warnings and client-id match rate."""
    config = open_config(ctx)
    with StateStore.open_read_only(config.state_url()) as store:
        report = build_status(config, store, SystemClock().now(), timedelta(days=days))
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=False))
        return
    print_status(report, days)


def print_status(report: StatusReport, days: int) -> None:
    console.print(_overview(report))
    console.print(_queue_table(report))
    console.print(_delay_table(report))
    for c in report.connectors:
        console.print()
        console.print(cell(c.name, "bold"), highlight=False)
        for line in _details(c, report.generated_at, days):
            console.print(line, markup=False, highlight=False)
    matches = _match_table(report)
    if matches.row_count:
        console.print()
        console.print(matches)


def _overview(report: StatusReport) -> Table:
    table = Table(title="Connectors", title_justify="left")
    for col in ("connector", "last run", "result", "last ok", "CRM API", "match rate"):
        table.add_column(col)
    now = report.generated_at
    for c in report.connectors:
        run = c.last_run
        table.add_row(
            cell(f"{c.name} ({c.type})"),
            _ago(run.started_at, now) if run else "-",
            _result(c),
            _ago(c.last_ok_at, now) if c.last_ok_at else "-",
            _api(c),
            _rate(c.match_rate),
        )
    return table


def _queue_table(report: StatusReport) -> Table:
    table = Table(title="Outbox", title_justify="left")
    table.add_column("connector")
    for col in QUEUE_COLUMNS:
        table.add_column(col, justify="right")
    for c in report.connectors:
        table.add_row(cell(c.name), *(str(c.queue.get(k, 0)) for k in QUEUE_COLUMNS))
    return table


def _result(c: ConnectorStatus) -> Text:
    """The last run's result, unless the mapping file is broken now: then runs keep sending
    with the last good version, and a plain `ok` would hide that edits are not taking effect."""
    run = c.last_run
    if c.mapping_broken:
        return Text("mapping broken", style="bold red")
    return cell(run.result if run else "never ran")


HELD = (
    "(claimed by a sender; rows a killed run held come back when its lease ends: pending if "
    "their request never left, else unknown)"
)


def _details(c: ConnectorStatus, now: datetime, days: int) -> list[str]:
    f = c.freshness
    lines = []
    if c.mapping_problem:
        lines.append(
            f"  mapping broken: {printable(c.mapping_problem)}; runs keep using the last good "
            "version (figures below are theirs) until the file is fixed "
            "(check it with `ga4sync mappings validate`)"
        )
    if c.next_retry_at is not None:
        lines.append(
            f"  retry: {c.queue.get('retry', 0)} rows wait; the next goes at "
            f"{_iso(c.next_retry_at)} (in {_dur((c.next_retry_at - now).total_seconds())})"
        )
    if f.events:
        lines.append(
            f"  freshness (CRM change -> GA4, last {days}d, {f.events} sent): last "
            f"{_dur(f.last_lag_s)} ({_ago(f.last_sent_at, now)}), p50 {_dur(f.p50_s)}, "
            f"p90 {_dur(f.p90_s)}, p99 {_dur(f.p99_s)}"
        )
    else:
        lines.append(f"  freshness: nothing sent in the last {days}d")
    windows = ", ".join(f"{w.value} {c.windows.get(w.value, 0)}" for w in WINDOW_ORDER)
    lines.append(f"  GA4 windows: {windows}; joinable to the web session {c.session_joinable}")
    if c.queue.get("sending"):
        ends = c.lease_ends_at
        until = (
            f"; the lease ends at {_iso(ends)} (in {_dur((ends - now).total_seconds())})"
            if ends is not None
            else ""
        )
        lines.append(f"  sending: {c.queue['sending']} {HELD}{until}")
    run = c.last_run
    if run is not None:
        if run.error:
            lines.append(f"  error: {printable(run.error)}")
        for warning in run.warnings:
            lines.append(f"  warning: {printable(warning)}")
    return lines


def _titled(title: str) -> Table:
    """A table at least as wide as its title: rich wraps a title to the table's width, and
    a few short columns cut a long one into two lines."""
    return Table(title=title, title_justify="left", min_width=len(title))


def _match_table(report: StatusReport) -> Table:
    table = _titled("Client-id match rate (transitions a rule maps, by stage)")
    for col in ("connector", "stage", "with client id", "missing", "bad", "rate"):
        table.add_column(col, justify="left" if col in ("connector", "stage") else "right")
    for c in report.connectors:
        for m in c.match:
            table.add_row(
                cell(c.name),
                cell(m.stage),
                str(m.usable),
                str(m.missing),
                str(m.bad),
                _rate(m.rate),
            )
    return table


def _delay_table(report: StatusReport) -> Table:
    """Live CRM move -> GA4's 2xx (first syncs and backfills left out): hold p95 against the
    connector's poll interval."""
    table = _titled("Delivery delay (live CRM move -> GA4 accepted, last 24h)")
    for col in ("connector", "moves", "p50", "p95", "max"):
        table.add_column(col, justify="left" if col == "connector" else "right")
    for c in report.connectors:
        d = c.delay
        table.add_row(cell(c.name), str(d.events), _dur(d.p50_s), _dur(d.p95_s), _dur(d.max_s))
    return table


def _api(c: ConnectorStatus) -> str:
    run = c.last_run
    if run is None:
        return "-"
    text = f"{run.api_calls} calls"
    if run.api_used is not None and run.api_limit:
        text += f", {run.api_used}/{run.api_limit} ({100 * run.api_used / run.api_limit:.0f}%)"
    return text


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="minutes").replace("+00:00", "Z")


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    return f"{_dur((now - when).total_seconds())} ago"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
