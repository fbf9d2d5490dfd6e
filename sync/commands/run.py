"""`ga4sync run`: one pass of capture + delivery, for cron jobs and one-shot runs."""

from __future__ import annotations

import sys

import click

from sync.commands.common import open_config, open_store, print_run
from sync.engine import Engine


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
    try:
        report = engine.run_once(list(connectors) or None)
    finally:
        engine.close()
        store.close()
    print_run(report)
    sys.exit(0 if report.ok else 1)
