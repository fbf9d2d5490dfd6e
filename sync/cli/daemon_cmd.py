"""`ga4sync daemon`: run every connector on its schedule until SIGTERM/SIGINT.

The daemon logs at INFO unless `--log-level` is given: its one line per scheduled run is
INFO, and at the other commands' WARNING default a healthy daemon printed nothing at all, so
a person could not tell it from a hung one. Other commands keep WARNING (their result is
their output).
"""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource
from ga4sync.cli.common import open_config, open_store
from ga4sync.core.logs import configure_logging
from ga4sync.ops.daemon import Daemon

DAEMON_LOG_LEVEL = "INFO"


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
    Logs one line per scheduled run (INFO, the daemon's default level; --log-level WARNING
    keeps only problems); --log-format json makes each a JSON object.
    """
    root = ctx.find_root()
    if root.get_parameter_source("log_level") in (None, ParameterSource.DEFAULT):
        configure_logging(DAEMON_LOG_LEVEL, str(root.params.get("log_format", "text")))
    config = open_config(ctx, connects=True)
    store = open_store(config)
    try:
        code = Daemon(config, store).serve(http_host=http_host, http_port=http_port)
    finally:
        store.close()
    sys.exit(code)
