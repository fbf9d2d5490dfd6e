"""`ga4sync demo`: the whole pipeline against the local sandbox, no credentials, no internet."""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import click
from ga4sync.cli.common import console, errors
from ga4sync.cli.display import cell
from ga4sync.cli.run_summary import print_run, summarize_run
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine, RunReport
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore
from rich.table import Table


def sent_table(store: StateStore, keys: list[str], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("opportunity", no_wrap=True)
    table.add_column("stage move", min_width=10)
    table.add_column("changed (UTC)", no_wrap=True)
    table.add_column("GA4 event")
    rows = store.list_outbox(keys=keys) if keys else []
    values = [_value(row.payload) for row in rows]
    # As wide as the widest value: on a narrow terminal the text columns give way, not a number.
    table.add_column("value", no_wrap=True, min_width=max(map(len, values), default=5))
    for row, value in zip(rows, values, strict=True):
        table.add_row(
            cell(row.record_id),
            cell(f"{row.from_value or '(new)'} -> {row.to_value}"),
            row.changed_at.strftime("%m-%d %H:%M"),
            cell(row.event_name or ""),
            cell(value),
        )
    return table


def _value(payload: str | None) -> str:
    params = json.loads(payload or "{}").get("event", {}).get("params", {})
    return f"{params['value']} {params.get('currency', '')}".strip() if "value" in params else ""


@click.command()
@click.option("--records", default=12, show_default=True, help="Opportunities to generate.")
@click.option("--seed", default=42, show_default=True, help="Data generator seed.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the sandbox files (config, state db, CA) in this folder.",
)
def demo(records: int, seed: int, keep: Path | None) -> None:
    """Run three syncs against a local Salesforce and GA4 sandbox and show what was sent."""
    tmp = None
    if keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="ga4sync-demo-")
        workdir = Path(tmp.name)
    else:
        workdir = keep
    try:
        ok = _demo(workdir, records, seed)
    finally:
        if tmp is not None:
            tmp.cleanup()
    sys.exit(0 if ok else 1)


def _demo(workdir: Path, records: int, seed: int) -> bool:
    env = SandboxEnvironment(workdir)
    env.clock.advance(-timedelta(minutes=20))
    generator = env.seed(count=records, seed=seed)
    with env:
        state_url = f"sqlite:///{workdir.resolve() / 'ga4sync-demo.db'}"
        config = load_config(env.write_config(state_url=state_url))
        # Not config.state_url(): GA4SYNC_STATE_URL (set where ga4sync is deployed) must not
        # send the demo's made-up transitions into the real state database.
        store = StateStore.open(state_url)
        engine = Engine(config, store)
        total_sent = 0
        try:
            console.print(
                f"[bold]Sandbox[/bold] Salesforce {env.sf_server.url}  GA4 "
                f"{env.ga4_server.url}  ({records} opportunities, seed {seed})\n"
            )
            first = engine.run_once()
            _show(store, first, "Run 1: events sent to GA4")
            total_sent += first.delivery.sent

            env.clock.advance(timedelta(minutes=19))
            moved = generator.advance(env.salesforce.data, env.opportunity_ids, 3, env.clock.now())
            console.print(
                f"\n[bold]Sandbox clock +19 min[/bold]: moved {len(moved)} "
                f"opportunities ({', '.join(moved)})\n"
            )
            second = engine.run_once()
            _show(store, second, "Run 2: only the new moves")
            total_sent += second.delivery.sent

            third = engine.run_once()
            _show(store, third, "Run 3: nothing new")
            total_sent += third.delivery.sent
        finally:
            engine.close()
            store.close()
        received = len(env.ga4.events())
        console.print(
            f"\nGA4 sandbox received {received} events; ga4sync marked {total_sent} sent."
        )
        ok = (
            first.ok
            and second.ok
            and third.ok
            and received == total_sent
            and third.delivery.sent == 0
            and first.delivery.sent > 0
        )
        if not ok:
            console.print("[red]demo failed: the figures above do not add up[/red]")
        return ok


def _show(store: StateStore, report: RunReport, title: str) -> None:
    print_run(summarize_run(report, None), console, errors, clamp_command=[])
    if report.delivery.sent_keys:
        console.print(sent_table(store, report.delivery.sent_keys, title))
    else:
        console.print(f"{title}: no events sent")
