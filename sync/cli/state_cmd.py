"""`ga4sync state prune --older-than 90d`: retention that never forgets what dedup needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from ga4sync.cli.common import open_config, open_store
from ga4sync.cli.help_format import HelpGroup
from ga4sync.core.durations import parse_duration


@click.group(cls=HelpGroup)
def state() -> None:
    """The state database: retention."""


@state.command()
@click.option("--older-than", "older_than", required=True, help="Age of resolved rows, e.g. 90d.")
@click.option("--dry-run", is_flag=True, default=False, help="Count, delete nothing.")
@click.pass_context
def prune(ctx: click.Context, older_than: str, dry_run: bool) -> None:
    """Delete resolved rows (sent, skipped, invalid, discarded, dead) not touched for a while.

    Kept regardless of age: `sent` rows a once_per_record check needs, and rows whose CRM
    change a connector may still re-read (from its watermark minus the larger of its overlap
    and initial lookback). See StateStore.prune for the full rule.
    """
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.UsageError(f"--older-than: {exc}") from None
    if age < timedelta(days=1):
        raise click.UsageError("--older-than must be at least 1d (e.g. 90d)")
    config = open_config(ctx)
    with open_store(config) as store:
        marks: dict[str, datetime] = {}
        for mark in store.watermarks():
            marks[mark.connector] = min(mark.value, marks.get(mark.connector, mark.value))
        now = datetime.now(UTC)
        keep_since: dict[str, datetime] = {}
        for c in config.connectors:
            reread = max(c.overlap, c.initial_lookback)
            keep_since[c.name] = marks.get(c.name, now) - reread
        result = store.prune(older_than=now - age, keep_since=keep_since, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {result.deleted} rows; kept {result.kept_for_once} sent rows once_per_record "
        f"needs and {result.kept_in_window} rows a connector may re-read"
    )
    # Nothing old enough to delete is a success: a scheduled prune must not page anyone.
