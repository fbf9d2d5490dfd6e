"""`ga4sync backfill`: one connector's pipeline from --from to --to, with progress and a summary.

Exit codes: 0 done, 1 a failure (CRM error, or rows that failed to send), 2 usage or config,
130 interrupted by Ctrl-C or SIGTERM (run the same command again to continue). An interrupted
backfill is not done, so it never exits 0: a Kubernetes Job or systemd unit restarts it.
"""

from __future__ import annotations

import sys

import click
from ga4sync.cli.common import console, open_config, open_store
from ga4sync.cli.signals import restore_signals, stop_on_signals
from ga4sync.core.clock import SystemClock
from ga4sync.core.model import Status
from ga4sync.pipeline.backfill import (
    Backfill,
    BackfillRequest,
    BackfillSummary,
    DryRunReport,
    dry_run,
    parse_window,
)
from ga4sync.pipeline.config import Config
from ga4sync.pipeline.engine import CaptureReport, Engine
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.store import ClaimedRow
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

progress_console = Console(stderr=True)


@click.command()
@click.option("--connector", required=True, help="The connector to backfill (its name).")
@click.option(
    "--from", "start", required=True, help="First day (UTC), e.g. 2026-11-01, or a date-time."
)
@click.option(
    "--to",
    "end",
    required=True,
    help="Last day (UTC, included), e.g. 2026-11-07; or a date-time (excluded), e.g. "
    "2026-11-07T12:00:00Z.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would be sent; write nothing, send nothing."
)
@click.option(
    "--old-events",
    type=click.Choice(["skip", "clamp"]),
    default="skip",
    show_default=True,
    help="Events older than GA4's 72 h window: skip them (reported), or send them at "
    "now-72h with the CRM time in the `crm_changed_at` param.",
)
@click.pass_context
def backfill(
    ctx: click.Context, connector: str, start: str, end: str, dry_run: bool, old_events: str
) -> None:
    """Send one connector's stage changes in a past window, beside a running daemon.

    Nothing is sent twice: transitions the daemon already captured are not sent again.
    Ctrl-C stops after the page or GA4 batch in flight; run it again to continue.
    """
    config = open_config(ctx)
    config.connector(connector)
    window_start, window_end = parse_window(start, end)
    request = BackfillRequest(
        connector,
        window_start,
        window_end,
        old_events="clamp" if old_events == "clamp" else "skip",
    )
    if dry_run:
        _print_dry_run(dry_run_report(config, request))
        return
    config.old_events = request.old_events
    store = open_store(config)
    engine = Engine(config, store)
    previous = stop_on_signals(engine.stop_event)
    try:
        summary = _run_with_progress(Backfill(engine, request))
    finally:
        restore_signals(previous)
        engine.close()
        store.close()
    _print_summary(summary)
    if summary.stopped:
        sys.exit(130)
    sys.exit(0 if summary.ok else 1)


def dry_run_report(config: Config, request: BackfillRequest) -> DryRunReport:
    with progress_console.status(f"Reading {request.describe()} (dry run)..."):
        return dry_run(config, request, now=SystemClock().now())


def _run_with_progress(job: Backfill) -> BackfillSummary:
    request = job.request
    span = (request.end - request.start).total_seconds()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=progress_console,
        transient=False,
    ) as progress:
        capture_task = progress.add_task("capture", total=span, counts="")

        def on_page(report: CaptureReport) -> None:
            done = (report.watermark - request.start).total_seconds() if report.watermark else 0
            progress.update(
                capture_task,
                completed=min(max(done, 0.0), span),
                counts=f"new {report.captured}, already {report.duplicates}, "
                f"to send {report.pending}, skipped {sum(report.skipped.values())}",
            )

        send_task = progress.add_task("deliver", total=None, counts="", visible=False)
        counts = {"sent": 0, "other": 0}

        def on_deliver(due: int) -> None:
            progress.update(capture_task, completed=span)
            progress.update(send_task, total=max(due, 1), visible=True)

        def on_outcome(_row: ClaimedRow, status: Status, _outcome: SendOutcome | None) -> None:
            counts["sent" if status == "sent" else "other"] += 1
            progress.update(
                send_task, advance=1, counts=f"sent {counts['sent']}, not sent {counts['other']}"
            )

        summary = job.run(on_page=on_page, on_deliver=on_deliver, on_outcome=on_outcome)
        if not summary.stopped and summary.capture_status != "locked":
            progress.update(send_task, completed=progress.tasks[send_task].total)
    return summary


def _print_summary(s: BackfillSummary) -> None:
    console.print(f"Backfill {s.request.describe()}  (scope {s.request.scope})", markup=False)
    if s.capture_error:
        console.print(f"capture {s.capture_status}: {s.capture_error}", markup=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    table.add_row("captured", str(s.captured), "new transitions this pass")
    table.add_row(
        "already in outbox", str(s.already), "captured by the daemon or an earlier pass; not resent"
    )
    table.add_row("sent", str(s.sent), "")
    table.add_row(
        "skipped",
        str(sum(s.skipped.values())),
        ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())),
    )
    table.add_row(
        "failed",
        str(sum(s.failed.values())),
        ", ".join(f"{k} {v}" for k, v in sorted(s.failed.items())),
    )
    if s.waiting:
        table.add_row("waiting", str(s.waiting), "run the same command again to send them")
    console.print(table)
    if s.skipped.get("too_old"):
        console.print(
            "too_old: older than GA4's 72 h backdating window; --old-events clamp sends them "
            "at now-72h with the CRM time in `crm_changed_at`.",
            markup=False,
        )
    if s.stopped:
        console.print("interrupted: run the same command again to continue.", markup=False)


def _print_dry_run(r: DryRunReport) -> None:
    console.print(f"Dry run {r.request.describe()}: nothing written, nothing sent", markup=False)
    table = Table(title=f"Would send (first {len(r.sample)})", title_justify="left")
    for col in ("record", "changed (UTC)", "stage", "event"):
        table.add_column(col, no_wrap=col != "stage", overflow="fold")
    for w in r.sample:
        table.add_row(
            w.record_id, w.changed_at.strftime("%Y-%m-%d %H:%M"), w.to_value, w.event_name
        )
    if r.sample:
        console.print(table)
    console.print(f"transitions {r.transitions}", markup=False)
    console.print(f"would send {r.would_send}", markup=False)
    console.print(f"already in outbox {r.already} (not sent again)", markup=False)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(r.skipped.items()))
    console.print(f"would skip {sum(r.skipped.values())}: {skipped}", markup=False)
    console.print(f"invalid {r.invalid}", markup=False)
    for reason in r.reasons:
        console.print(f"  {reason}", markup=False)
