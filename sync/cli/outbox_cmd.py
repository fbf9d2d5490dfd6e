"""`ga4sync outbox list|show|resend|discard`: look at the outbox and act on rows by hand.

Exit codes: 0 done, 1 nothing matched (or some keys were unknown), 2 usage or config.
`resend` and `discard` are a person's decisions (typically about `unknown` rows, after checking
GA4); the reason and who decided are stored on the row.
"""

from __future__ import annotations

import getpass
import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
from ga4sync.cli.common import open_config, open_store
from ga4sync.cli.display import printable
from ga4sync.cli.help_format import HelpGroup
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.pipeline.config import Config
from ga4sync.state.readings import OutboxEntry
from ga4sync.state.store import StateStore

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


def _store(ctx: click.Context, connector: str | None = None) -> StateStore:
    config = open_config(ctx)
    store = open_store(config)
    _check_connector(config, store, connector)
    return store


def _reader(ctx: click.Context, connector: str | None = None) -> StateStore:
    """`list` and `show` only look: they work on a read-only store and never create one."""
    config = open_config(ctx)
    store = StateStore.open_read_only(config.state_url())
    _check_connector(config, store, connector)
    return store


def _check_connector(config: Config, store: StateStore, connector: str | None) -> None:
    """A mistyped `--connector` is a usage error naming the known ones, not `0 rows` (which
    reads as "that connector has nothing"). A connector since removed from the config but
    with rows in the outbox is still known."""
    names = [c.name for c in config.connectors]
    if connector is None or connector in names or store.count_outbox(connector=connector):
        return
    store.close()
    raise click.UsageError(
        f"no connector named `{connector}` in {config.path}; known: {', '.join(names) or 'none'}"
    )


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def _row_json(row: OutboxEntry) -> dict[str, Any]:
    return {
        "key": row.key,
        "connector": row.connector,
        "object_type": row.object_type,
        "record_id": row.record_id,
        "from": row.from_value,
        "to": row.to_value,
        "changed_at": _iso(row.changed_at),
        "status": row.status,
        "reason": redact(row.reason) if row.reason else None,
        "event": row.event_name,
        "attempts": row.attempts,
        "next_attempt_at": _next_attempt(row),
        "scope": row.scope,
        "updated_at": _iso(row.updated_at),
    }


def _next_attempt(row: OutboxEntry) -> str | None:
    """When a `retry` row goes next; other statuses have no next attempt a person waits for."""
    if row.status != Status.RETRY.value:
        return None
    return _iso(row.next_attempt_at)


def _listed_json(row: OutboxEntry) -> dict[str, Any]:
    """A `list --format json` row: what a script needs to act on it, GA4 payload included.

    The stored payload is the Measurement Protocol body without the api_secret, which is only
    ever added to the request URL at the moment of sending.
    """
    payload = json.loads(row.payload) if row.payload else None
    event = payload.get("event") if isinstance(payload, dict) else None
    params = event.get("params") if isinstance(event, dict) else None
    return _row_json(row) | {
        "client_id": payload.get("client_id") if isinstance(payload, dict) else None,
        "params": params,
        "payload": payload,
    }


@click.group(cls=HelpGroup)
def outbox() -> None:
    """Every captured transition and what happened to it."""


@outbox.command("list")
@click.option("--status", "status_opts", multiple=True, help="pending, sent, unknown, ... (repeat)")
@click.option("--connector", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option(
    "--wide",
    is_flag=True,
    help="One line per row with the full key and every column (for wide terminals and grep).",
)
@click.pass_context
def list_cmd(
    ctx: click.Context,
    status_opts: tuple[str, ...],
    connector: str | None,
    fmt: str,
    limit: int | None,
    wide: bool,
) -> None:
    """List outbox rows (exit 1 when none match).

    The table gives each row a key prefix that `ga4sync outbox show KEY` accepts, its status,
    event and, on the lines below, the CRM move and why it is in that status."""
    statuses = _statuses(status_opts)
    with _reader(ctx, connector) as store:
        if fmt == "json":
            shown = _print_json(
                store.iter_outbox_summary(
                    statuses=statuses or None, connector=connector, limit=limit, with_payload=True
                )
            )
        else:
            total = store.count_outbox(statuses=statuses or None, connector=connector)
            rows = store.iter_outbox_summary(
                statuses=statuses or None, connector=connector, limit=limit or TABLE_ROWS
            )
            shown = _print_table(rows, total, wide=wide)
    sys.exit(0 if shown else 1)


TABLE_ROWS = 1000
"""Rows a table shows without --limit: a person reads a screenful, not 10^6 rows (which take
minutes to lay out); `--limit N` or `--format json` (streamed) give them all."""


def _print_json(rows: Iterator[OutboxEntry]) -> int:
    """A JSON array written row by row: valid JSON of any size in constant memory."""
    count = 0
    click.echo("[", nl=False)
    for row in rows:
        item = json.dumps(_listed_json(row), indent=2)
        click.echo(("," if count else "") + "\n" + textwrap.indent(item, "  "), nl=False)
        count += 1
    click.echo("\n]" if count else "]")
    return count


KEY_SHOWN = 16
"""Key characters a table shows: `outbox show` takes any unique prefix of 8 or more, and 16
hex characters stay unique in any outbox; the full key is in `--wide` and JSON."""


def _print_table(rows: Iterator[OutboxEntry], total: int, *, wide: bool) -> int:
    """Rows as blocks that fit the terminal: the key, status and event on the first line
    (never wrapped or cut: they are what a person types and looks for), the CRM move and
    the reason on indented lines below, wrapped to the width."""
    width = shutil.get_terminal_size().columns
    count = 0
    lines: list[str] = []
    for r in rows:
        count += 1
        lines.extend(_wide_line(r) if wide else _row_block(r, width))
    title = f"Outbox ({count} rows)"
    if count < total:
        title = f"Outbox (first {count} of {total} rows)"
    click.echo(title)
    if count and not wide:
        click.echo(f"{'key':<{KEY_SHOWN}}  {'status':<9}  event")
    for line in lines:
        click.echo(line)
    if count < total:
        click.echo(
            f"{total - count} more rows: use --limit {total} or --format json to see them all"
        )
    return count


def _when(value: Any) -> str:
    iso = _iso(value)
    return iso[:16].replace("T", " ") if iso else "-"


def _row_block(r: OutboxEntry, width: int) -> list[str]:
    event = printable(r.event_name or "-")
    head = f"{r.key[:KEY_SHOWN]:<{KEY_SHOWN}}  {r.status:<9}  {event}"
    indent = " " * 4
    move = (
        f"{printable(r.connector)} {printable(r.record_id)}: "
        f"{printable(r.from_value or '-')} -> {printable(r.to_value)}, "
        f"changed {_when(r.changed_at)} UTC"
    )
    out = [head, *_wrap(move, width, indent)]
    nxt = _next_attempt(r)
    if nxt:
        out.append(
            f"{indent}next attempt {_when(r.next_attempt_at)} UTC (attempt {r.attempts + 1})"
        )
    if r.reason:
        out += _wrap("why: " + printable(redact(r.reason)), width, indent)
    return out


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=max(width, 40),
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    ) or [indent]


def _wide_line(r: OutboxEntry) -> list[str]:
    nxt = _next_attempt(r)
    cells = [
        r.key,
        r.status,
        printable(r.event_name or "-"),
        printable(r.connector),
        printable(r.record_id),
        f"{printable(r.from_value or '-')} -> {printable(r.to_value)}",
        _iso(r.changed_at) or "-",
        f"next {nxt}" if nxt else "",
        printable(redact(r.reason or "")),
    ]
    return ["  ".join(c for c in cells if c)]


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
        "field": row.field,
        "detected_by": row.detected_by,
        "source_ref": row.source_ref,
        "crm_record": json.loads(row.record_json or "{}"),
        "mapping": {
            "path": row.mapping_path,
            "sha256": row.mapping_hash,
            "rule": row.rule,
        },
        "payload": json.loads(row.payload) if row.payload else None,
        "once_key": row.once_key,
        "resend_if_unknown": bool(row.resend_if_unknown),
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
        "attempt_log": [
            {
                "at": _iso(a.attempted_at),
                "outcome": a.outcome,
                "http_status": a.http_status,
                "ga4_answer": redact(a.detail) if a.detail else None,
                "payload_sent": json.loads(a.payload) if a.payload else None,
            }
            for a in attempts
        ],
    }
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    for line in _show_lines(doc):
        click.echo(line)


def _show_lines(doc: dict[str, Any]) -> list[str]:
    """The audit trail as text. Every CRM- or GA4-derived value goes through `printable`: an
    escape sequence in a stage name must not reach the terminal (JSON parts are already
    escaped by json.dumps)."""
    p = printable
    m = doc["mapping"]
    status = f"  status: {p(doc['status'])}" + (f" ({p(doc['reason'])})" if doc["reason"] else "")
    if doc["next_attempt_at"]:
        status += f"; next attempt at {doc['next_attempt_at']}"
    lines = [
        f"transition {doc['key']}",
        f"  {p(doc['connector'])} {p(doc['object_type'])} {p(doc['record_id'])} "
        f"{p(doc['field'])}: {p(doc['from'] or '-')} -> {p(doc['to'])} at {doc['changed_at']} "
        f"({p(doc['detected_by'])})",
        f"  CRM history row: {p(doc['source_ref'] or '-')}",
        f"  CRM record: {json.dumps(doc['crm_record'], sort_keys=True, default=str)}",
        f"  mapping: {p(m['path'] or '-')} (sha256 {p(m['sha256'] or '-')}) "
        f"rule {p(m['rule'] or '-')}",
        status,
        f"  payload: {json.dumps(doc['payload'], sort_keys=True)}",
        f"  attempts: {len(doc['attempt_log'])}",
    ]
    for a in doc["attempt_log"]:
        http = a["http_status"] if a["http_status"] is not None else "no answer"
        lines.append(f"    {a['at']} {p(a['outcome'])} HTTP {http}: {p(a['ga4_answer'] or '')}")
        if a["payload_sent"] is not None:
            lines.append(f"      sent: {json.dumps(a['payload_sent'], sort_keys=True)}")
    return lines


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
    with _store(ctx, connector) as store:
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
    with _store(ctx, connector) as store:
        targets = _targets(store, keys, status_opts, connector)
        now = datetime.now(UTC)
        changed = store.discard(targets, now, f"{reason} (by {_who()} at {_iso(now)})")
    click.echo(f"discarded {changed} of {len(targets)} rows")
    if changed < len(targets):
        click.echo("rows already sent or being sent were left alone")
    sys.exit(0 if changed else 1)
