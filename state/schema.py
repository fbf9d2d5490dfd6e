"""Tables and versioned migrations. Plain typed columns so `psql`/`sqlite3` can read them."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("connector", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(128), nullable=False),
    sa.Column("record_id", sa.String(128), nullable=False),
    sa.Column("field", sa.String(128), nullable=False),
    sa.Column("from_value", sa.Text),
    sa.Column("to_value", sa.Text, nullable=False),
    sa.Column("changed_at", TS, nullable=False),
    sa.Column("detected_by", sa.String(16), nullable=False),
    sa.Column("source_ref", sa.Text),
    sa.Column("rule", sa.Text),
    sa.Column("event_name", sa.String(64)),
    sa.Column("payload", sa.Text),
    sa.Column("group_key", sa.Text),
    sa.Column("once_key", sa.String(64)),
    sa.Column("resend_if_unknown", sa.Boolean, nullable=False, default=False),
    sa.Column("mapping_path", sa.Text),
    sa.Column("mapping_hash", sa.String(64)),
    sa.Column("record_json", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", TS),
    sa.Column("claim_token", sa.String(64)),
    sa.Column("lease_until", TS),
    sa.Column("send_started_at", TS),
    # Set by the sender right before a claimed row's request is written (v3): a lease that
    # runs out without it means the request never left, so the row is simply queued again.
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("sent_at", TS),
    sa.Column("scope", sa.String(128), nullable=False, default="daemon"),
    # v4: captured by a poll that resumed from a watermark (a daemon tick, `ga4sync run`), so
    # sent_at - changed_at is the delivery delay a person waits for. False for a first sync of
    # old history and for backfills, whose delay is the age of the history; NULL before v4.
    sa.Column("live", sa.Boolean),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_once", "once_key"),
    sa.Index("ix_outbox_connector_status", "connector", "status"),
    sa.Index("ix_outbox_claim", "claim_token"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, index=True),
    sa.Column("attempted_at", TS, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("http_status", sa.Integer),
    sa.Column("detail", sa.Text),
    sa.Column("payload", sa.Text),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("object_type", sa.String(128), primary_key=True),
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("value", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("connector", sa.String(64), primary_key=True),
    sa.Column("object_type", sa.String(128), primary_key=True),
    sa.Column("record_id", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("seen_at", TS, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("captured", sa.Integer, nullable=False, default=0),
    sa.Column("rejected", sa.Integer, nullable=False, default=0),
    sa.Column("api_calls", sa.Integer, nullable=False, default=0),
    sa.Column("api_used", sa.Integer),
    sa.Column("api_limit", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("warnings", sa.Text),
    # v2: who runs it, so `status` can tell a live run from one whose process was killed.
    sa.Column("owner_host", sa.String(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_started", sa.String(64)),
    sa.Column("heartbeat_at", TS),
)
RUN_OWNER_COLUMNS = ("owner_host", "owner_pid", "owner_started", "heartbeat_at")
"""Added by migration 2; a database still at version 1 (read-only) has none of them."""

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)


def _v1(conn: Connection) -> None:
    for table in (outbox, attempts, watermarks, snapshots, runs, locks):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    """Owner and heartbeat of a run. Only the columns still missing are added: `_v1` creates
    tables from the current definitions, so a database made new already has them."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(runs.name)}
    for name in RUN_OWNER_COLUMNS:
        if name not in present:
            column = runs.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {runs.name} ADD COLUMN {name} {kind}"))


def _v3_send_started(conn: Connection) -> None:
    """outbox.send_started_at: tells a crashed sender's unsent rows from ones it may have sent."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
    if "send_started_at" not in have:  # a database created at v3+ already has it (_v1)
        column_type = TS.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE outbox ADD COLUMN send_started_at {column_type}"))


def _v4_live(conn: Connection) -> None:
    """outbox.live: which rows a live poll captured, so the delivery delay leaves out old
    history. Rows captured before stay NULL (not known), and count as not live."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
    if "live" not in have:  # a database created at v4+ already has it (_v1)
        column_type = outbox.c.live.type.compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE outbox ADD COLUMN live {column_type}"))


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3_send_started, _v4_live]
"""MIGRATIONS[i] moves the schema from version i to i+1. Append; never edit a shipped one."""
SEND_STARTED_VERSION = 3
"""From this schema version on, outbox has send_started_at."""
LIVE_VERSION = 4
"""From this schema version on, outbox has live."""

OUTBOX_COLUMN_SINCE = {"send_started_at": SEND_STARTED_VERSION, "live": LIVE_VERSION}
"""Outbox columns added by a migration, and the version that added them."""


def outbox_columns(version: int, *, leave_out: frozenset[str] = frozenset()) -> list[sa.Column]:
    """The outbox columns a database at `version` has: an older store read as it is
    (read-only commands) lacks the ones added since."""
    return [
        c
        for c in outbox.c
        if c.name not in leave_out and OUTBOX_COLUMN_SINCE.get(c.name, 1) <= version
    ]


SCHEMA_VERSION = len(MIGRATIONS)
