"""Shared pieces of the commands: opening config and store, printing reports."""

from __future__ import annotations

import click
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.delivery import DeliveryReport
from ga4sync.pipeline.engine import CaptureReport, RunReport
from ga4sync.state.store import StateStore
from rich.console import Console
from rich.table import Table

console = Console()


def open_config(ctx: click.Context) -> Config:
    return load_config(ctx.obj["config_path"])


def open_store(config: Config) -> StateStore:
    return StateStore.open(config.state_url())


def capture_table(captures: list[CaptureReport]) -> Table:
    table = Table(title="Capture", title_justify="left")
    table.add_column("connector", no_wrap=True)
    for col in ("result", "new", "seen", "to send", "skipped", "invalid", "calls"):
        table.add_column(col, no_wrap=col != "result")
    for c in captures:
        table.add_row(
            c.connector,
            c.status if not c.error else f"{c.status}: {c.error}",
            str(c.captured),
            str(c.duplicates),
            str(c.pending),
            str(sum(c.skipped.values())),
            str(c.invalid + c.rejected),
            str(c.api_calls),
        )
    return table


def skip_lines(captures: list[CaptureReport]) -> list[str]:
    """Why rows were skipped: the reasons a person acts on (no client id -> fix the form)."""
    lines = []
    for c in captures:
        if c.skipped:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(c.skipped.items()))
            lines.append(f"{c.connector} skipped: {reasons}")
        for warning in c.warnings:
            lines.append(f"{c.connector} warning: {warning}")
    return lines


def delivery_line(d: DeliveryReport) -> str:
    return (
        f"GA4: sent {d.sent} in {d.requests} requests, retry {d.retry}, unknown {d.unknown}, "
        f"dead {d.dead}, invalid {d.invalid}, skipped {d.skipped}"
    )


def print_run(report: RunReport) -> None:
    console.print(capture_table(report.captures))
    for line in skip_lines(report.captures):
        console.print(line, markup=False)
    console.print(delivery_line(report.delivery))
