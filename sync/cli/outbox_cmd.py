"""`ga4sync outbox list|show|resend|discard`: look at the outbox and act on rows by hand.

Exit codes: 0 done, 1 nothing matched (or some keys were unknown), 2 usage or config.
`resend` and `discard` are a person's decisions (typically about `unknown` rows, after checking
GA4); the reason and who decided are stored on the row.
"""

from __future__ import annotations

import getpass
import json
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
from ga4sync.cli.common import console, open_config, open_store
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.state.store import StateStore
from rich.table import Table

STATUS_NAMES = [s.value for s in Status]


def _statuses(values: tuple[str, ...]) -> list[str]:
    """`--status unknown --status dead` or `--status unknown,dead`."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in STATUS_NAMES:
                raise click.UsageError(
                    f"unknown status `{part}`; choose from {', '.join(STATUS_NAMES)}"
                )
            out.append(part)
    return out


def _store(ctx: click.Context) -> StateStore:
    return open_store(open_config(ctx))


def _reader(ctx: click.Context) -> StateStore:
    """`list` and `show` only look: they work on a read-only store and never create one."""
    return StateStore.open_read_only(open_config(ctx).state_url())


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "connector": row["connector"],
        "object_type": row["object_type"],
        "record_id": row["record_id"],
        "from": row["from_value"],
        "to": row["to_value"],
        "changed_at": _iso(row["changed_at"]),
        "status": row["status"],
        "reason": redact(row["reason"]) if row["reason"] else None,
        "event": row["event_name"],
        "attempts": row["attempts"],
        "scope": row["scope"],
        "updated_at": _iso(row["updated_at"]),
    }


@click.group()
def outbox() -> None:
    """Every captured transition and what happened to it."""


@outbox.command("list")
@click.option("--status", "status_opts", multiple=True, help="pending, sent, unknown, ... (repeat)")
@click.option("--connector", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.pass_context
def list_cmd(
    ctx: click.Context,
    status_opts: tuple[str, ...],
    connector: str | None,
    fmt: str,
    limit: int | None,
) -> None:
    """List outbox rows (exit 1 when none match)."""
    statuses = _statuses(status_opts)
    with _reader(ctx) as store:
        if fmt == "json":
            shown = _print_json(
                store.iter_outbox_summary(
                    statuses=statuses or None, connector=connector, limit=limit
                )
            )
        else:
            total = store.count_outbox(statuses=statuses or None, connector=connector)
            rows = store.iter_outbox_summary(
                statuses=statuses or None, connector=connector, limit=limit or TABLE_ROWS
            )
            shown = _print_table(rows, total)
    sys.exit(0 if shown else 1)


TABLE_ROWS = 1000
"""Rows a table shows without --limit: a person reads a screenful, not 10^6 rows (which take
minutes to lay out); `--limit N` or `--format json` (streamed) give them all."""


def _print_json(rows: Iterator[dict[str, Any]]) -> int:
    """A JSON array written row by row: valid JSON of any size in constant memory."""
    count = 0
    click.echo("[", nl=False)
    for row in rows:
        item = json.dumps(_row_json(row), indent=2)
        click.echo(("," if count else "") + "\n" + textwrap.indent(item, "  "), nl=False)
        count += 1
    click.echo("\n]" if count else "]")
    return count


def _print_table(rows: Iterator[dict[str, Any]], total: int) -> int:
    table = Table(title_justify="left")
    for col in ("key", "connector", "record", "move", "changed", "status", "event", "why"):
        table.add_column(col, overflow="fold")
    count = 0
    for r in rows:
        count += 1
        table.add_row(
            r["key"][:16],
            r["connector"],
            r["record_id"],
            f"{r['from_value'] or '-'} -> {r['to_value']}",
            _iso(r["changed_at"]) or "",
            r["status"],
            r["event_name"] or "",
            redact(r["reason"] or ""),
        )
    table.title = f"Outbox ({count} rows)"
    if count < total:
        table.title = f"Outbox (first {count} of {total} rows)"
    console.print(table)
    if count < total:
        console.print(
            f"{total - count} more rows: use --limit {total} or --format json to see them all",
            markup=False,
        )
    return count


@outbox.command("show")
@click.argument("key")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def show(ctx: click.Context, key: str, fmt: str) -> None:
    """The audit trail of one transition: CRM record and history row, mapping, payload, attempts."""
    with _reader(ctx) as store:
        keys, problems = store.resolve_keys([key])
        if problems:
            for p in problems:
                click.echo(f"error: {p}", err=True)
            sys.exit(1)
        (row,) = store.list_outbox(keys=keys)
        attempts = store.attempts_for(keys[0])
    doc = _row_json(row) | {
        "field": row["field"],
        "detected_by": row["detected_by"],
        "source_ref": row["source_ref"],
        "crm_record": json.loads(row["record_json"] or "{}"),
        "mapping": {
            "path": row["mapping_path"],
            "sha256": row["mapping_hash"],
            "rule": row["rule"],
        },
        "payload": json.loads(row["payload"]) if row["payload"] else None,
        "once_key": row["once_key"],
        "resend_if_unknown": bool(row["resend_if_unknown"]),
        "created_at": _iso(row["created_at"]),
        "sent_at": _iso(row["sent_at"]),
        "attempt_log": [
            {
                "at": _iso(a["attempted_at"]),
                "outcome": a["outcome"],
                "http_status": a["http_status"],
                "ga4_answer": redact(a["detail"]) if a["detail"] else None,
                "payload_sent": json.loads(a["payload"]) if a["payload"] else None,
            }
            for a in attempts
        ],
    }
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    click.echo(f"transition {doc['key']}")
    click.echo(
        f"  {doc['connector']} {doc['object_type']} {doc['record_id']} {doc['field']}: "
        f"{doc['from'] or '-'} -> {doc['to']} at {doc['changed_at']} ({doc['detected_by']})"
    )
    click.echo(f"  CRM history row: {doc['source_ref'] or '-'}")
    click.echo(f"  CRM record: {json.dumps(doc['crm_record'], sort_keys=True, default=str)}")
    m = doc["mapping"]
    click.echo(
        f"  mapping: {m['path'] or '-'} (sha256 {m['sha256'] or '-'}) rule {m['rule'] or '-'}"
    )
    click.echo(f"  status: {doc['status']}" + (f" ({doc['reason']})" if doc["reason"] else ""))
    click.echo(f"  payload: {json.dumps(doc['payload'], sort_keys=True)}")
    click.echo(f"  attempts: {len(doc['attempt_log'])}")
    for a in doc["attempt_log"]:
        http = a["http_status"] if a["http_status"] is not None else "no answer"
        click.echo(f"    {a['at']} {a['outcome']} HTTP {http}: {a['ga4_answer'] or ''}")
        if a["payload_sent"] is not None:
            click.echo(f"      sent: {json.dumps(a['payload_sent'], sort_keys=True)}")


def _targets(
    store: StateStore, keys: tuple[str, ...], status_opts: tuple[str, ...], connector: str | None
) -> list[str]:
    statuses = _statuses(status_opts)
    if bool(keys) == bool(statuses):
        raise click.UsageError("give either KEY... or --status (not both, not neither)")
    if statuses:
        return store.keys_with_status(statuses, connector)
    found, problems = store.resolve_keys(list(keys))
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        sys.exit(1)
    return found


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown user"


@outbox.command()
@click.argument("keys", nargs=-1)
@click.option("--status", "status_opts", multiple=True, help="Resend every row in this status.")
@click.option("--connector", default=None, help="With --status: only this connector.")
@click.option("--reason", default="checked by hand", show_default=True)
@click.pass_context
def resend(
    ctx: click.Context,
    keys: tuple[str, ...],
    status_opts: tuple[str, ...],
    connector: str | None,
    reason: str,
) -> None:
    """Queue rows again (a person's decision: e.g. GA4 did not get these `unknown` events)."""
    with _store(ctx) as store:
        targets = _targets(store, keys, status_opts, connector)
        now = datetime.now(UTC)
        changed = store.resend(targets, now, f"resend by {_who()} at {_iso(now)}: {reason}")
    click.echo(f"queued {changed} of {len(targets)} rows for sending")
    if changed < len(targets):
        click.echo("rows already sent, being sent, or without a payload were left alone")
    sys.exit(0 if changed else 1)


@outbox.command()
@click.argument("keys", nargs=-1)
@click.option("--status", "status_opts", multiple=True, help="Discard every row in this status.")
@click.option("--connector", default=None, help="With --status: only this connector.")
@click.option("--reason", required=True, help="Why (stored on each row).")
@click.pass_context
def discard(
    ctx: click.Context,
    keys: tuple[str, ...],
    status_opts: tuple[str, ...],
    connector: str | None,
    reason: str,
) -> None:
    """Never send these rows (e.g. GA4 already has these `unknown` events)."""
    with _store(ctx) as store:
        targets = _targets(store, keys, status_opts, connector)
        now = datetime.now(UTC)
        changed = store.discard(targets, now, f"{reason} (by {_who()} at {_iso(now)})")
    click.echo(f"discarded {changed} of {len(targets)} rows")
    if changed < len(targets):
        click.echo("rows already sent or being sent were left alone")
    sys.exit(0 if changed else 1)
