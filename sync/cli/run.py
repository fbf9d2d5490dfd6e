"""`ga4sync run`: one pass of capture + delivery, for cron jobs and one-shot runs.

SIGTERM or Ctrl-C (a cron job's timeout, `systemctl stop`, `kubectl delete`) stops after the
CRM page or GA4 batches in flight, commits them and exits 0: the next run resumes from the
committed watermark. Without this the default handler killed the process mid-send, leaving
rows `unknown` (a person must check GA4) that a graceful stop settles as sent or not sent.
A second signal stops at once.

Exit codes: 0 done; 1 a connector failed, or GA4 could not be reached and nothing was
delivered (cron and CI must notice; the events wait as `retry`); 2 usage or config.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from ga4sync.cli.common import console, errors, open_config, open_store, summary_format_option
from ga4sync.cli.run_progress import RunProgress, wanted
from ga4sync.cli.run_summary import (
    UnreachableWatch,
    print_run,
    summarize_run,
    unreachable_line,
)
from ga4sync.cli.signals import restore_signals, stop_on_signals
from ga4sync.core.model import Status
from ga4sync.pipeline.engine import Engine
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.leases import held_rows
from ga4sync.state.store import ClaimedRow


@click.command()
@click.option("--connector", "connectors", multiple=True, help="Only this connector (repeatable).")
@click.option(
    "--validate-remote",
    is_flag=True,
    default=False,
    help="Check each mapping rule's first events against GA4's /debug/mp/collect before "
    "sending (also config ga4.validate_remote).",
)
@click.option(
    "--old-events",
    type=click.Choice(["skip", "clamp"]),
    default=None,
    help="Events older than GA4's 72 h window: skip them (reported as too_old), or send them "
    "at now-72h with the CRM time in the `crm_changed_at` param. clamp also sends the events "
    "earlier runs skipped as too_old. Default: the config's old_events (skip).",
)
@summary_format_option
@click.pass_context
def run(
    ctx: click.Context,
    connectors: tuple[str, ...],
    validate_remote: bool,
    old_events: str | None,
    fmt: str,
) -> None:
    """Capture new stage transitions and deliver everything due to GA4, once."""
    config = open_config(ctx, connects=True)
    if validate_remote:
        config.ga4.validate_remote = True
    if old_events is not None:
        config.old_events = "clamp" if old_events == "clamp" else "skip"
    for name in connectors:
        config.connector(name)
    targets = list(connectors) or [c.name for c in config.connectors if c.enabled]
    store = open_store(config)
    engine = Engine(config, store)
    watch = UnreachableWatch(config.ga4.endpoint)
    requeued = 0
    previous = stop_on_signals(engine.stop_event)
    try:
        if old_events == "clamp":
            requeued = store.requeue_too_old(targets, datetime.now(UTC))
        with RunProgress(show=wanted()) as progress:

            def on_outcome(row: ClaimedRow, status: Status, outcome: SendOutcome | None) -> None:
                watch(row, status, outcome)
                progress.on_outcome(row, status, outcome)

            report = engine.run_once(
                list(connectors) or None,
                on_page=progress.on_page,
                on_outcome=on_outcome,
                on_deliver=progress.on_deliver,
            )
        held = held_rows(store.engine, targets)
    finally:
        restore_signals(previous)
        engine.close()
        store.close()
    summary = summarize_run(report, watch.verdict(), requeued_too_old=requeued, held=held)
    if fmt == "json":
        click.echo(summary.model_dump_json())
        if summary.ga4_unreachable is not None:  # stderr too: cron mails show it
            errors.print(
                unreachable_line(summary.ga4_unreachable, summary.delivery.sent),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    else:
        clamp = [
            "ga4sync",
            "--config",
            ctx.obj["config_path"],
            "run",
            "--old-events",
            "clamp",
        ]
        for name in connectors:
            clamp += ["--connector", name]
        print_run(summary, console, errors, clamp)
    sys.exit(summary.exit_code)
