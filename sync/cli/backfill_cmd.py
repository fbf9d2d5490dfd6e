"""`ga4sync backfill`: one connector's pipeline from --from to --to, with progress and a summary.

Exit codes: 0 done, 1 a failure (CRM error, or rows that failed to send), 2 usage or config,
130 interrupted by Ctrl-C or SIGTERM (run the same command again to continue). An interrupted
backfill is not done, so it never exits 0: a Kubernetes Job or systemd unit restarts it.
"""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime

import click
from ga4sync.cli.common import console, open_config, open_store, summary_format_option
from ga4sync.cli.display import cell, printable
from ga4sync.cli.signals import interrupt_on_signals, restore_signals, stop_on_signals
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
from pydantic import BaseModel, Field
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
    "now-72h with the CRM time in the `crm_changed_at` param; clamp also sends those an "
    "earlier pass of the same window skipped.",
)
@summary_format_option
@click.pass_context
def backfill(
    ctx: click.Context,
    connector: str,
    start: str,
    end: str,
    dry_run: bool,
    old_events: str,
    fmt: str,
) -> None:
    """Send one connector's stage changes in a past window, beside a running daemon.

    Nothing is sent twice: transitions the daemon already captured are not sent again.
    Ctrl-C stops after the page or GA4 batch in flight; run it again to continue.
    """
    config = open_config(ctx, connects=True)
    config.connector(connector)
    window_start, window_end = parse_window(start, end)
    request = BackfillRequest(
        connector,
        window_start,
        window_end,
        old_events="clamp" if old_events == "clamp" else "skip",
    )
    if dry_run:
        previous = interrupt_on_signals()
        try:
            report = dry_run_report(config, request)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: the dry run wrote and sent nothing; run it again to see the "
                "whole window",
                err=True,
            )
            sys.exit(130)
        finally:
            restore_signals(previous)
        if fmt == "json":
            click.echo(dry_run_json(report).model_dump_json())
        else:
            _print_dry_run(report)
        return
    config.old_events = request.old_events
    store = open_store(config)
    engine = Engine(config, store)
    requeued = 0
    previous = stop_on_signals(engine.stop_event)
    try:
        try:
            if request.old_events == "clamp":
                # A person asked to send this window's old events: those an earlier pass
                # skipped as too_old are in the outbox already, so capture alone would never
                # send them.
                requeued = store.requeue_too_old(
                    [connector], datetime.now(UTC), scope=request.scope
                )
            summary = _run_with_progress(Backfill(engine, request))
        finally:
            restore_signals(previous)
            engine.close()
            store.close()
    except KeyboardInterrupt:  # the second Ctrl-C/SIGTERM: stopped at once, still 130
        click.echo(
            "aborted: run the same command again to continue; rows whose request was in "
            "flight are `unknown` (`ga4sync outbox list --status unknown`)",
            err=True,
        )
        sys.exit(130)
    code = 130 if summary.stopped else (0 if summary.ok else 1)
    if fmt == "json":
        click.echo(summary_json(summary, requeued, code).model_dump_json(by_alias=True))
    else:
        clamp = ["ga4sync", "--config", ctx.obj["config_path"], "backfill"]
        clamp += ["--connector", connector, "--from", start, "--to", end]
        _print_summary(summary, requeued, [*clamp, "--old-events", "clamp"])
    sys.exit(code)


class BackfillJson(BaseModel):
    """`backfill --format json`; keys documented in README.md, only ever added to."""

    connector: str
    scope: str
    capture_status: str
    capture_error: str | None
    captured: int
    already_in_outbox: int
    requeued_too_old: int
    sent: int
    skipped: dict[str, int]
    failed: dict[str, int]
    waiting: int
    interrupted: bool
    ok: bool
    exit_code: int
    from_: str = Field(serialization_alias="from")
    to: str


def summary_json(s: BackfillSummary, requeued: int, code: int) -> BackfillJson:
    return BackfillJson(
        connector=s.request.connector,
        scope=s.request.scope,
        capture_status=s.capture_status,
        capture_error=s.capture_error,
        captured=s.captured,
        already_in_outbox=s.already,
        requeued_too_old=requeued,
        sent=s.sent,
        skipped=dict(sorted(s.skipped.items())),
        failed={str(k): v for k, v in sorted(s.failed.items())},
        waiting=s.waiting,
        interrupted=s.stopped,
        ok=code == 0,
        exit_code=code,
        from_=s.request.start.isoformat(),
        to=s.request.end.isoformat(),
    )


class DryRunJson(BaseModel):
    dry_run: bool
    connector: str
    transitions: int
    would_send: int
    already_in_outbox: int
    skipped: dict[str, int]
    invalid: int
    reasons: list[str]


def dry_run_json(r: DryRunReport) -> DryRunJson:
    return DryRunJson(
        dry_run=True,
        connector=r.request.connector,
        transitions=r.transitions,
        would_send=r.would_send,
        already_in_outbox=r.already,
        skipped=dict(sorted(r.skipped.items())),
        invalid=r.invalid,
        reasons=list(r.reasons),
    )


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
        disable=not progress_console.is_terminal,  # no bars in cron logs, as `run`
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

        # Delivery runs beside the capture: its bar shows from the start, its total once the
        # capture is over (on_deliver).
        send_task = progress.add_task("deliver", total=None, counts="")
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


def _print_summary(s: BackfillSummary, requeued: int, clamp_command: list[str]) -> None:
    console.print(
        f"Backfill {printable(s.request.describe())}  (scope {s.request.scope})", markup=False
    )
    if requeued:
        console.print(
            f"queued again {requeued} events an earlier pass skipped as too_old", markup=False
        )
    if s.capture_error:
        console.print(f"capture {s.capture_status}: {printable(s.capture_error)}", markup=False)
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
            "too_old: older than GA4's 72 h backdating window, not sent. To send them at "
            "now-72h with the CRM time in `crm_changed_at`, run:\n  " + shlex.join(clamp_command),
            markup=False,
            highlight=False,
            soft_wrap=True,
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
            cell(w.record_id),
            w.changed_at.strftime("%Y-%m-%d %H:%M"),
            cell(w.to_value),
            cell(w.event_name),
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
        console.print(f"  {printable(reason)}", markup=False)
