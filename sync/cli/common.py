"""Shared pieces of the commands: opening config and store, the consoles they print on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import click
from ga4sync.pipeline.config import Config, load_config
from ga4sync.state.store import StateStore

if TYPE_CHECKING:
    from rich.console import Console

summary_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: the summary as one JSON object on stdout, for scripts (keys in README).",
)
"""`run` and `backfill` take the same `--format`, so scripts read both the same way."""


UNBOUNDED_WIDTH = 1000
"""Width of output that is not a terminal (and has no COLUMNS): wide enough for any table."""


class _LazyConsole:
    """A rich Console made on first use: a `run --format json` or a command that prints
    nothing of its own never imports rich (tens of milliseconds of a cron job's start-up)."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
            if not self._console.is_terminal and "COLUMNS" not in os.environ:
                # A file or a pipe has no width: rich's 80-column default cut tables and
                # numbers (`48000.` for 48000.0 USD) in cron logs and `> out.txt`.
                self._console.width = UNBOUNDED_WIDTH
        return getattr(self._console, name)


console = cast("Console", _LazyConsole(stderr=False))
errors = cast("Console", _LazyConsole(stderr=True))
"""Error lines (`error: ...`), so stdout carries only the result (a table, or JSON)."""


def open_config(ctx: click.Context, *, connects: bool = False) -> Config:
    """`connects`: the command talks to the CRM or GA4, so a missing `ca_file` is an error
    now (at its config line), not an OSError at the first request."""
    config = load_config(ctx.obj["config_path"])
    if connects:
        config.check_ca_files()
    return config


def open_store(config: Config) -> StateStore:
    return StateStore.open(config.state_url())
