"""SQLAlchemy Core state store: the promise that each transition reaches GA4 once.

Capture writes outbox rows, snapshots and the watermark in ONE transaction per CRM page.
Delivery claims rows with a lease (`sending`) and commits before any request leaves, so a
crash can never turn into a silent resend: an expired lease becomes `unknown`.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.admin import ONCE_BLOCKING, RESOLVED, OutboxAdmin, PruneResult
from ga4sync.state.errors import describe, safe_url
from ga4sync.state.locks import (
    AdvisoryLock,
    CaptureLock,
    LeaseLock,
    release_lease_lock,
    try_lease_lock,
)
from ga4sync.state.outbox import ClaimedRow, DeliveryQueue, Settlement
from ga4sync.state.runs import RunLog
from ga4sync.state.sql import insert_ignore, retry_on_disconnect, to_json
from sqlalchemy.engine import Connection, Engine

__all__ = [
    "RESOLVED",
    "CaptureResult",
    "ClaimedRow",
    "OutboxRow",
    "PruneResult",
    "Settlement",
    "StateStore",
]


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


class StateStore(DeliveryQueue, RunLog, OutboxAdmin):
    """One object per process; thread-safe through SQLAlchemy's pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # -- opening and migrations ------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> StateStore:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any bad URL is a config error
            raise ConfigError(f"state.url is not a usable database URL: {exc}") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        store = cls(engine)
        if migrate:
            try:
                store.migrate()
            except sa.exc.SQLAlchemyError as exc:
                engine.dispose()
                raise describe(exc, url) from None
            except ConfigError:
                engine.dispose()
                raise
        return store

    def migrate(self) -> None:
        """Bring the schema up to date; refuse a newer schema or one with tables missing."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7346021)"))
            s.schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar()
            current = int(current or 0)
            if current > s.SCHEMA_VERSION:
                raise ConfigError(
                    f"the state database is at schema version {current}, but this ga4sync "
                    f"knows only up to {s.SCHEMA_VERSION}; upgrade ga4sync (refusing to run)"
                )
            for version in range(current, s.SCHEMA_VERSION):
                s.MIGRATIONS[version](conn)
                conn.execute(sa.insert(s.schema_version).values(version=version + 1))
            missing = sorted(set(s.metadata.tables) - set(sa.inspect(conn).get_table_names()))
            if missing:
                raise ConfigError(
                    f"the state database {safe_url(str(self.engine.url))} is damaged: table(s) "
                    f"{', '.join(missing)} are missing although it is at schema version "
                    f"{current}. Restore it from a backup, or point state.url at a new database "
                    "(a new database sends again what the CRM still shows in its lookback)"
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar() or 0
            )

    def close(self) -> None:
        self.engine.dispose()

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
    ) -> CaptureResult:
        """Rows, snapshots and watermark land together or not at all.

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
                values.append(self._row_values(row, status, reason, now))
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
        return result

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
        self, row: OutboxRow, status: Status, reason: str | None, now: datetime
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

    # -- locks -----------------------------------------------------------------------------
    def capture_lock(self, name: str, owner: str, ttl: timedelta) -> CaptureLock:
        """The lock that keeps two processes from capturing one connector (see state.locks)."""
        if self.dialect == "postgresql":
            return AdvisoryLock(self.engine, name)
        return LeaseLock(self.engine, self.dialect, name, owner, ttl)

    def try_lock(self, name: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """A lease row: works the same on both backends and survives a crashed holder."""
        return try_lease_lock(self.engine, self.dialect, name, owner, now, ttl)

    def release_lock(self, name: str, owner: str) -> None:
        release_lease_lock(self.engine, name, owner)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy manage transactions, so BEGIN IMMEDIATE below is the only BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    _wal_mode(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


WAL_SWITCH_TRIES = 100


def _wal_mode(cur: Any) -> None:
    """Switch a new database file to WAL. SQLite answers `database is locked` at once, without
    waiting for the busy timeout, when several processes open a brand-new file together (two
    commands started at the same moment on first install): try again for a few seconds."""
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.05)


def _sqlite_begin_immediate(conn: Connection) -> None:
    """Take the write lock at BEGIN: two processes can't both read-then-claim the same rows."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
