"""Capture: outbox rows, snapshots and the watermark of one CRM page, in one transaction.

A mixin of `StateStore` (it needs `engine` and `dialect`), apart from opening and locks so
each file has one job. Re-reading the same CRM page is harmless: inserts are ON CONFLICT DO
NOTHING and the watermark only moves forward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.admin import ONCE_BLOCKING
from ga4sync.state.errors import disk_full_is_clear
from ga4sync.state.owners import ProcessOwner
from ga4sync.state.sql import insert_ignore, retry_on_disconnect, to_json
from sqlalchemy.engine import Connection, Engine


@dataclass
class OutboxRow:
    """One captured transition and what will be (or was) sent for it."""

    key: str
    connector: str
    object_type: str
    record_id: str
    field: str
    from_value: str | None
    to_value: str
    changed_at: datetime
    detected_by: str
    status: Status
    reason: str | None = None
    source_ref: str | None = None
    rule: str | None = None
    event_name: str | None = None
    payload: dict[str, Any] | None = None
    group_key: str | None = None
    once_key: str | None = None
    resend_if_unknown: bool = False
    mapping_path: str | None = None
    mapping_hash: str | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    scope: str = "daemon"


@dataclass
class CaptureResult:
    inserted: int = 0
    duplicates: int = 0
    once_skipped: int = 0
    inserted_keys: set[str] = dataclasses.field(default_factory=set)
    once_skipped_keys: set[str] = dataclasses.field(default_factory=set)


class CaptureWriter:
    engine: Engine
    dialect: str

    # -- capture ---------------------------------------------------------------------------
    @retry_on_disconnect
    def get_watermark(
        self, connector: str, object_type: str, scope: str = "daemon"
    ) -> datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(s.watermarks.c.value).where(
                    s.watermarks.c.connector == connector,
                    s.watermarks.c.object_type == object_type,
                    s.watermarks.c.scope == scope,
                )
            ).scalar()
        return ensure_utc(value) if value is not None else None

    @disk_full_is_clear
    @retry_on_disconnect
    def capture(
        self,
        *,
        connector: str,
        object_type: str,
        rows: Sequence[OutboxRow],
        watermark: datetime | None,
        now: datetime,
        scope: str = "daemon",
        snapshots: dict[str, str] | None = None,
        live: bool = False,
    ) -> CaptureResult:
        """Rows, snapshots and watermark land together or not at all.

        `live`: the page comes from a poll that resumed from a watermark, so its rows count
        in the delivery delay (a first sync of old history and backfills do not).

        Set-based, because a page is 2,000 rows: one query for the keys already captured, one
        for the once_per_record keys already taken, and one multi-row INSERT ... ON CONFLICT
        DO NOTHING RETURNING key, whose answer (not our earlier read) says what is new when
        another process captured the same page at the same moment.
        """
        result = CaptureResult()
        with self.engine.begin() as conn:
            existing = self._existing_keys(conn, [r.key for r in rows])
            fresh: list[OutboxRow] = []
            for row in rows:
                if row.key in existing:
                    result.duplicates += 1
                else:
                    existing.add(row.key)
                    fresh.append(row)
            taken = self._once_taken(
                conn, [r.once_key for r in fresh if r.once_key and r.status == Status.PENDING]
            )
            values = []
            for row in fresh:
                status, reason = row.status, row.reason
                if status == Status.PENDING and row.once_key:
                    if row.once_key in taken:
                        status = Status.SKIPPED
                        reason = (
                            f"once_per_record: {row.event_name} was already sent for record "
                            f"{row.record_id}"
                        )
                        result.once_skipped_keys.add(row.key)
                    taken.add(row.once_key)
                values.append(self._row_values(row, status, reason, now, live=live))
            inserted = self._insert_many_ignore(conn, values)
            result.inserted_keys = inserted
            result.inserted = len(inserted)
            result.duplicates += len(values) - len(inserted)
            result.once_skipped_keys &= inserted
            result.once_skipped = len(result.once_skipped_keys)
            if snapshots:
                self._upsert_snapshots(conn, connector, object_type, snapshots, now)
            if watermark is not None:
                self._advance_watermark(conn, connector, object_type, scope, watermark, now)
            self._heartbeat(conn, connector, now)
        return result

    @staticmethod
    def _heartbeat(conn: Connection, connector: str, now: datetime) -> None:
        """This process's running capture of `connector` is alive: it just committed a page."""
        owner = ProcessOwner.current()
        r = s.runs
        conn.execute(
            sa.update(r)
            .where(
                r.c.connector == connector,
                r.c.status == "running",
                r.c.owner_host == owner.host,
                r.c.owner_pid == owner.pid,
            )
            .values(heartbeat_at=now)
        )

    def _insert_many_ignore(self, conn: Connection, values: list[dict[str, Any]]) -> set[str]:
        if not values:
            return set()
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(s.outbox)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(s.outbox)
        stmt = stmt.on_conflict_do_nothing().returning(s.outbox.c.key)
        found: set[str] = set()
        for i in range(0, len(values), 500):
            found.update(conn.execute(stmt, values[i : i + 500]).scalars())
        return found

    @retry_on_disconnect
    def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these transition keys are already in the outbox (any status or scope)."""
        with self.engine.connect() as conn:
            return self._existing_keys(conn, list(keys))

    def _existing_keys(self, conn: Connection, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            found.update(
                conn.execute(sa.select(s.outbox.c.key).where(s.outbox.c.key.in_(chunk))).scalars()
            )
        return found

    def _once_taken(self, conn: Connection, once_keys: list[str]) -> set[str]:
        """once_per_record keys that already have a row sent (or on its way)."""
        o = s.outbox
        found: set[str] = set()
        unique = sorted(set(once_keys))
        for i in range(0, len(unique), 500):
            found.update(
                conn.execute(
                    sa.select(o.c.once_key).where(
                        o.c.once_key.in_(unique[i : i + 500]),
                        o.c.status.in_([st.value for st in ONCE_BLOCKING]),
                    )
                ).scalars()
            )
        return found

    def _row_values(
        self,
        row: OutboxRow,
        status: Status,
        reason: str | None,
        now: datetime,
        *,
        live: bool = False,
    ) -> dict[str, Any]:
        return {
            "key": row.key,
            "connector": row.connector,
            "object_type": row.object_type,
            "record_id": row.record_id,
            "field": row.field,
            "from_value": row.from_value,
            "to_value": row.to_value,
            "changed_at": row.changed_at,
            "detected_by": row.detected_by,
            "source_ref": row.source_ref,
            "rule": row.rule,
            "event_name": row.event_name,
            "payload": to_json(row.payload) if row.payload is not None else None,
            "group_key": row.group_key,
            "once_key": row.once_key,
            "resend_if_unknown": row.resend_if_unknown,
            "mapping_path": row.mapping_path,
            "mapping_hash": row.mapping_hash,
            "record_json": to_json(row.record),
            "status": status.value,
            "reason": reason,
            "attempts": 0,
            "next_attempt_at": now if status == Status.PENDING else None,
            "created_at": now,
            "updated_at": now,
            "scope": row.scope,
            "live": live,
        }

    def _insert_ignore(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        return insert_ignore(conn, self.dialect, table, values)

    def _upsert_snapshots(
        self,
        conn: Connection,
        connector: str,
        object_type: str,
        snaps: dict[str, str],
        now: datetime,
    ) -> None:
        for record_id, value in snaps.items():
            values = {
                "connector": connector,
                "object_type": object_type,
                "record_id": record_id,
                "value": value,
                "seen_at": now,
            }
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                stmt: Any = (
                    pg_insert(s.snapshots)
                    .values(**values)
                    .on_conflict_do_update(
                        index_elements=["connector", "object_type", "record_id"],
                        set_={"value": value, "seen_at": now},
                    )
                )
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                stmt = (
                    sqlite_insert(s.snapshots)
                    .values(**values)
                    .on_conflict_do_update(
                        index_elements=["connector", "object_type", "record_id"],
                        set_={"value": value, "seen_at": now},
                    )
                )
            conn.execute(stmt)

    @retry_on_disconnect
    def get_snapshots(
        self, connector: str, object_type: str, record_ids: Iterable[str]
    ) -> dict[str, str | None]:
        ids = list(record_ids)
        out: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(s.snapshots.c.record_id, s.snapshots.c.value).where(
                        s.snapshots.c.connector == connector,
                        s.snapshots.c.object_type == object_type,
                        s.snapshots.c.record_id.in_(ids[i : i + 500]),
                    )
                )
                out.update({r.record_id: r.value for r in rows})
        return out

    def _advance_watermark(
        self,
        conn: Connection,
        connector: str,
        object_type: str,
        scope: str,
        value: datetime,
        now: datetime,
    ) -> None:
        """Only forward: a page that ends earlier than a previous one never moves it back."""
        t = s.watermarks
        current = conn.execute(
            sa.select(t.c.value).where(
                t.c.connector == connector, t.c.object_type == object_type, t.c.scope == scope
            )
        ).scalar()
        if current is None:
            self._insert_ignore(
                conn,
                t,
                {
                    "connector": connector,
                    "object_type": object_type,
                    "scope": scope,
                    "value": value,
                    "updated_at": now,
                },
            )
            current = conn.execute(
                sa.select(t.c.value).where(
                    t.c.connector == connector, t.c.object_type == object_type, t.c.scope == scope
                )
            ).scalar()
        if current is not None and ensure_utc(current) < value:
            conn.execute(
                sa.update(t)
                .where(
                    t.c.connector == connector, t.c.object_type == object_type, t.c.scope == scope
                )
                .values(value=value, updated_at=now)
            )
