"""`ga4sync` command line. Exit codes: 0 ok, 1 problems found / run failed, 2 usage or config."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from ga4sync import __version__
from ga4sync.core.errors import ConfigError, MappingError
from ga4sync.core.logs import configure_logging
from ga4sync.state.errors import StateStoreError, describe


class Ga4SyncGroup(click.Group):
    """Turns our own errors into one clear message and exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ConfigError, MappingError) as exc:
            for line in exc.problems:
                click.echo(f"error: {line}", err=True)
            sys.exit(2)
        except StateStoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except sa.exc.SQLAlchemyError as exc:
            # The state database failed mid-command (dropped connection, damaged file).
            error = describe(exc, None)
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=Ga4SyncGroup)
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
)
@click.option(
    "--log-format", default="text", show_default=True, type=click.Choice(["text", "json"])
)
@click.pass_context
def main(ctx: click.Context, config_path: str, log_level: str, log_format: str) -> None:
    """Send CRM stage changes to GA4 as offline conversions, each exactly once."""
    configure_logging(log_level, log_format)
    ctx.obj = {"config_path": config_path}


def _register() -> None:
    from ga4sync.cli import demo, run, sandbox_cmd

    main.add_command(run.run)
    main.add_command(demo.demo)
    main.add_command(sandbox_cmd.sandbox)
    from ga4sync.cli import mappings_cmd

    main.add_command(mappings_cmd.mappings)
    from ga4sync.cli import ga4_cmd

    main.add_command(ga4_cmd.ga4)
    from ga4sync.cli import daemon_cmd

    main.add_command(daemon_cmd.daemon)
    from ga4sync.cli import backfill_cmd

    main.add_command(backfill_cmd.backfill)
    from ga4sync.cli import outbox_cmd, state_cmd

    main.add_command(outbox_cmd.outbox)
    main.add_command(state_cmd.state)
    from ga4sync.cli import status_cmd

    main.add_command(status_cmd.status)
    from ga4sync.cli import report_cmd

    main.add_command(report_cmd.report)


_register()
