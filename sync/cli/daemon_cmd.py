"""`ga4sync daemon`: run every connector on its schedule until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

import click
from ga4sync.cli.common import open_config, open_store
from ga4sync.ops.daemon import Daemon


@click.command()
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /healthz and Prometheus /metrics on this port (off by default).",
)
@click.option(
    "--http-host",
    default="0.0.0.0",
    show_default=True,
    help="Address for --http-port (0.0.0.0 so Kubernetes probes and Prometheus reach it).",
)
@click.pass_context
def daemon(ctx: click.Context, http_port: int | None, http_host: str) -> None:
    """Capture and deliver each connector on its `every:`/`cron:` schedule, until stopped.

    SIGTERM or Ctrl-C finishes the page or GA4 batch in flight, commits it and exits 0.
    Use --log-level INFO --log-format json for one JSON line per run.
    """
    config = open_config(ctx)
    store = open_store(config)
    try:
        code = Daemon(config, store).serve(http_host=http_host, http_port=http_port)
    finally:
        store.close()
    sys.exit(code)
