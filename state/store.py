"""SQLAlchemy Core state store: the promise that each transition reaches GA4 once.

Capture writes outbox rows, snapshots and the watermark in ONE transaction per CRM page.
Delivery claims rows with a lease (`sending`) and commits before any request leaves, so a
crash can never turn into a silent resend: an expired lease becomes `unknown`.

This module opens the store (migrating it, or read-only for commands that only look) and
holds the capture locks; the work itself is in the mixins: capture.py, outbox.py (delivery),
runs.py, admin.py (a person's view and actions) and readings.py (status and report figures).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import TracebackType

import sqlalchemy as sa
from ga4sync.core.errors import ConfigError
from ga4sync.state import schema as s
from ga4sync.state.admin import RESOLVED, OutboxAdmin, PruneResult
from ga4sync.state.capture import CaptureResult, CaptureWriter, OutboxRow
from ga4sync.state.connect import create_engine
from ga4sync.state.errors import NoStateYet, StateStoreError, describe, safe_url
from ga4sync.state.locks import (
    AdvisoryLock,
    CaptureLock,
    LeaseLock,
    release_lease_lock,
    try_lease_lock,
)
from ga4sync.state.outbox import ClaimedRow, DeliveryQueue, Settlement
from ga4sync.state.readings import StoreReadings
from ga4sync.state.runs import RunLog
from sqlalchemy.engine import Engine

__all__ = [
    "RESOLVED",
    "CaptureResult",
    "ClaimedRow",
    "OutboxRow",
    "PruneResult",
    "Settlement",
    "StateStore",
]


class StateStore(CaptureWriter, DeliveryQueue, RunLog, OutboxAdmin, StoreReadings):
    """One object per process; thread-safe through SQLAlchemy's pool.

    `with StateStore.open(url) as store:` closes its connections however the block ends.
    """

    def __init__(self, engine: Engine, *, version: int = s.SCHEMA_VERSION) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.version = version
        """The schema version the database is at: readers of an older one skip newer columns."""

    # -- opening and migrations ------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> StateStore:
        engine = create_engine(url)
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

    @classmethod
    def open_read_only(cls, url: str) -> StateStore:
        """For commands that only look: never creates, migrates or writes anything.

        A new SQLite path or a database without ga4sync tables is `NoStateYet`; a newer
        schema is refused as by `open`; an older one is read as it is (an upgrade migrates it
        on the next run).
        """
        engine = create_engine(url, read_only=True)
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(s.schema_version.name):
                    raise NoStateYet(url, "the database has no ga4sync tables")
                version = int(
                    conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar() or 0
                )
                _refuse_newer(version)
                missing = sorted(set(s.metadata.tables) - set(sa.inspect(conn).get_table_names()))
                if missing:
                    raise _damaged(url, missing, version)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise describe(exc, url) from None
        except (ConfigError, StateStoreError):
            engine.dispose()
            raise
        return cls(engine, version=version)

    def migrate(self) -> None:
        """Bring the schema up to date; refuse a newer schema or one with tables missing."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7346021)"))
            s.schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar()
            current = int(current or 0)
            _refuse_newer(current)
            for version in range(current, s.SCHEMA_VERSION):
                s.MIGRATIONS[version](conn)
                conn.execute(sa.insert(s.schema_version).values(version=version + 1))
            missing = sorted(set(s.metadata.tables) - set(sa.inspect(conn).get_table_names()))
            if missing:
                raise _damaged(str(self.engine.url), missing, current)
        self.version = s.SCHEMA_VERSION

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.max(s.schema_version.c.version))).scalar() or 0
            )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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


def _refuse_newer(version: int) -> None:
    if version > s.SCHEMA_VERSION:
        raise ConfigError(
            f"the state database is at schema version {version}, but this ga4sync "
            f"knows only up to {s.SCHEMA_VERSION}; upgrade ga4sync (refusing to run)"
        )


def _damaged(url: str, missing: list[str], version: int) -> ConfigError:
    return ConfigError(
        f"the state database {safe_url(url)} is damaged: table(s) "
        f"{', '.join(missing)} are missing although it is at schema version "
        f"{version}. Restore it from a backup, or point state.url at a new database "
        "(a new database sends again what the CRM still shows in its lookback)"
    )
