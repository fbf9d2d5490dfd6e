"""`ga4sync` command line. Exit codes: 0 ok, 1 problems found / run failed, 2 usage or config."""

from __future__ import annotations

import logging
import os
import sys

import click
from ga4sync import __version__
from ga4sync.cli.lazy import LazyCommand, LazyGroup
from ga4sync.core.errors import ConfigError, MappingError
from ga4sync.core.logs import configure_logging
from ga4sync.core.secrets import redact

COMMANDS = (
    LazyCommand(
        "backfill",
        "ga4sync.cli.backfill_cmd",
        "backfill",
        "Send one connector's changes in a past window, beside the daemon.",
    ),
    LazyCommand(
        "daemon",
        "ga4sync.cli.daemon_cmd",
        "daemon",
        "Capture and deliver each connector on its schedule until stopped.",
    ),
    LazyCommand(
        "demo", "ga4sync.cli.demo", "demo", "Three syncs against the local sandbox, no credentials."
    ),
    LazyCommand("ga4", "ga4sync.cli.ga4_cmd", "ga4", "GA4 Measurement Protocol tools."),
    LazyCommand(
        "mappings",
        "ga4sync.cli.mappings_cmd",
        "mappings",
        "Check mapping files and preview what they would send.",
    ),
    LazyCommand(
        "outbox",
        "ga4sync.cli.outbox_cmd",
        "outbox",
        "Every captured transition and what happened to it.",
    ),
    LazyCommand(
        "report",
        "ga4sync.cli.report_cmd",
        "report",
        "Events per day, skips by reason and failures, as an HTML page.",
    ),
    LazyCommand(
        "run", "ga4sync.cli.run", "run", "Capture new stage changes once, deliver what is due."
    ),
    LazyCommand(
        "sandbox",
        "ga4sync.cli.sandbox_cmd",
        "sandbox",
        "Serve local Salesforce, HubSpot and GA4 stand-ins until Ctrl-C.",
    ),
    LazyCommand("state", "ga4sync.cli.state_cmd", "state", "The state database: retention."),
    LazyCommand(
        "status",
        "ga4sync.cli.status_cmd",
        "status",
        "Last run, freshness, queue, CRM API usage and warnings.",
    ),
)
GLOBAL_OPTIONS = {"--config": True, "-c": True, "--log-level": True, "--log-format": True}
"""Accepted before or after the subcommand (option -> takes a value)."""


def _state_error_exit(exc: Exception) -> None:
    """A state-store failure as one `error:` line and its exit code; other errors pass on.

    The state modules (and SQLAlchemy) are looked at only when something imported them: if
    they were never imported, the error cannot be theirs, and `--help` stays fast.
    """
    if "ga4sync.state.errors" not in sys.modules:
        return
    from ga4sync.state.errors import DatabaseError, StateStoreError, describe

    if isinstance(exc, StateStoreError):
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, DatabaseError):
        # The state database failed mid-command (dropped connection, damaged file).
        error = describe(exc, None)
        click.echo(f"error: {redact(str(error))}", err=True)
        sys.exit(error.exit_code)


log = logging.getLogger(__name__)

UNEXPECTED_EXIT = 1
MAX_ERROR_CHARS = 500


class Ga4SyncGroup(LazyGroup):
    """Turns our own errors into one clear message and exit code, never a traceback.

    Anything else is a bug, but its raw traceback could still carry a secret (a URL, a request's
    arguments), so it too becomes one scrubbed line; the scrubbed traceback goes to the log at
    DEBUG for whoever reports it.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ConfigError, MappingError) as exc:
            for line in exc.problems:
                click.echo(f"error: {redact(line)}", err=True)
            sys.exit(2)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click prints usage errors itself and sets the exit code
        except BrokenPipeError:
            # `ga4sync outbox list | head`: the reader left; say nothing more (Python's advice:
            # point stdout at devnull so the final flush cannot raise again).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for secrets
            _state_error_exit(exc)
            log.debug("unexpected error, traceback follows", exc_info=True)
            click.echo(f"error: {unexpected_error_line(exc)}", err=True)
            sys.exit(UNEXPECTED_EXIT)


def unexpected_error_line(exc: Exception) -> str:
    """One scrubbed line naming the error and where to look next."""
    text = " ".join(redact(str(exc)).split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return (
        f"unexpected {type(exc).__name__}: {text} (a bug in ga4sync: run again with "
        "--log-level DEBUG for the traceback, secrets removed, and report it)"
    )


@click.group(cls=Ga4SyncGroup, lazy_commands=COMMANDS, global_options=GLOBAL_OPTIONS)
@click.version_option(__version__, prog_name="ga4sync")
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="GA4SYNC_CONFIG",
    default="ga4sync.yaml",
    show_default=True,
    help="Config file (or GA4SYNC_CONFIG).",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="How much to log (to stderr). The daemon logs at INFO unless told (a line per "
    "run); the other commands at WARNING.",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one object per line, for log collectors.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str, log_level: str, log_format: str) -> None:
    """Send CRM stage changes to GA4 as offline conversions, each exactly once.

    The options above may also follow the command: `ga4sync run --config prod.yaml`.
    """
    configure_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path}
