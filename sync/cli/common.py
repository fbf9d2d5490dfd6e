"""Shared pieces of the commands: opening config and store, the consoles they print on."""

from __future__ import annotations

import click
from ga4sync.pipeline.config import Config, load_config
from ga4sync.state.store import StateStore
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

console = Console()
errors = Console(stderr=True)
"""Error lines (`error: ...`), so stdout carries only the result (a table, or JSON)."""


def open_config(ctx: click.Context) -> Config:
    return load_config(ctx.obj["config_path"])


def open_store(config: Config) -> StateStore:
    return StateStore.open(config.state_url())
