"""`ga4sync run`: one pass of capture + delivery, for cron jobs and one-shot runs.

SIGTERM or Ctrl-C (a cron job's timeout, `systemctl stop`, `kubectl delete`) stops after the
CRM page or GA4 batches in flight, commits them and exits 0: the next run resumes from the
committed watermark. Without this the default handler killed the process mid-send, leaving
rows `unknown` (a person must check GA4) that a graceful stop settles as sent or not sent.
A second signal stops at once.
"""

from __future__ import annotations

import sys

import click
from ga4sync.cli.common import open_config, open_store, print_run
from ga4sync.cli.signals import restore_signals, stop_on_signals
from ga4sync.pipeline.engine import Engine


@click.command()
@click.option("--connector", "connectors", multiple=True, help="Only this connector (repeatable).")
@click.option(
    "--validate-remote",
    is_flag=True,
    default=False,
    help="Check each mapping rule's first events against GA4's /debug/mp/collect before "
    "sending (also config ga4.validate_remote).",
)
@click.pass_context
def run(ctx: click.Context, connectors: tuple[str, ...], validate_remote: bool) -> None:
    """Capture new stage transitions and deliver everything due to GA4, once."""
    config = open_config(ctx)
    if validate_remote:
        config.ga4.validate_remote = True
    for name in connectors:
        config.connector(name)
    store = open_store(config)
    engine = Engine(config, store)
    previous = stop_on_signals(engine.stop_event)
    try:
        report = engine.run_once(list(connectors) or None)
    finally:
        restore_signals(previous)
        engine.close()
        store.close()
    print_run(report)
    sys.exit(0 if report.ok else 1)
