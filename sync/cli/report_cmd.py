"""`ga4sync report --from DATE --to DATE [--out report.html]`: a self-contained HTML report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from ga4sync.cli.common import console, open_config
from ga4sync.core.clock import SystemClock
from ga4sync.ops.report import build_report
from ga4sync.ops.report_html import render_report
from ga4sync.state.store import StateStore


@click.command()
@click.option(
    "--from",
    "start",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day (UTC), e.g. 2026-03-01.",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day (UTC), included.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where to write the HTML page.",
)
@click.pass_context
def report(ctx: click.Context, start: datetime, end: datetime, out: Path) -> None:
    """Events per day per event and connector, skips by reason, failures, freshness and GA4
    windows, with charts, in one HTML file that needs nothing else to open."""
    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    if (end - start).days > 3660:
        raise click.BadParameter("the period is longer than 10 years", param_hint="--to")
    if not out.parent.is_dir():
        raise click.BadParameter(
            f"the folder {out.parent} does not exist; create it first", param_hint="--out"
        )
    config = open_config(ctx)
    with StateStore.open_read_only(config.state_url()) as store:
        data = build_report(store, start.date(), end.date(), SystemClock().now())
    try:
        out.write_text(render_report(data), encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {out}: {exc.strerror or exc}", param_hint="--out"
        ) from None
    totals = ", ".join(f"{k} {v}" for k, v in data.totals.items())
    console.print(f"wrote {out} ({data.period_from} to {data.period_to}: {totals})", markup=False)
