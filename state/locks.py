"""Capture locks: two daemons never capture the same connector at once.

PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) taken on a connection held for the
whole capture. The server drops it the moment that connection ends, so a SIGKILLed holder frees
the lock at once: there is no lease to wait out and no row to clean up. The key includes the
current schema, so two deployments sharing one database never block each other.

SQLite (one host by nature): a row in `locks` with a lease, renewed after every committed page.
A holder whose process is gone from this host is taken over at once (a crashed `ga4sync run`
must not block capture for the whole lease); a holder on another host must let its lease run out.

Losing the lock mid-capture (the PostgreSQL connection was terminated, the lease was taken over)
raises `LockLost` at the next page, so at most the page in flight overlaps another capture, and
that page is still safe: outbox inserts are `ON CONFLICT DO NOTHING`.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from ga4sync.core.errors import Ga4SyncError
from ga4sync.state import schema as s
from ga4sync.state.sql import insert_ignore
from sqlalchemy.engine import Connection, Engine


class LockLost(Ga4SyncError):
    """Another process may be capturing now; this capture stops after its committed pages."""


class CaptureLock(Protocol):
    def acquire(self, now: datetime) -> bool: ...

    def renew(self, now: datetime) -> None: ...

    def release(self) -> None: ...


def holder_is_gone(owner: str) -> bool:
    """True when `owner` (host:pid:nonce, see sync.engine.process_owner) ran on this host and
    that process no longer exists. Anything we cannot prove dead counts as alive."""
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def try_lease_lock(
    engine: Engine, dialect: str, name: str, owner: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the lease row `name` for `owner`; False while someone else holds it."""
    t = s.locks
    with engine.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.name == name, t.c.expires_at < now))
        if insert_ignore(conn, dialect, t, {"name": name, "owner": owner, "expires_at": now + ttl}):
            return True
        renewed = conn.execute(
            sa.update(t).where(t.c.name == name, t.c.owner == owner).values(expires_at=now + ttl)
        ).rowcount
        if renewed:
            return True
        holder = conn.execute(sa.select(t.c.owner).where(t.c.name == name)).scalar()
        if holder is not None and holder_is_gone(holder):
            return bool(
                conn.execute(
                    sa.update(t)
                    .where(t.c.name == name, t.c.owner == holder)
                    .values(owner=owner, expires_at=now + ttl)
                ).rowcount
            )
        return False


def release_lease_lock(engine: Engine, name: str, owner: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(s.locks).where(s.locks.c.name == name, s.locks.c.owner == owner))


class LeaseLock:
    """The `locks` row with a lease (SQLite; also usable on PostgreSQL)."""

    def __init__(self, engine: Engine, dialect: str, name: str, owner: str, ttl: timedelta) -> None:
        self.engine, self.dialect, self.name, self.owner, self.ttl = (
            engine,
            dialect,
            name,
            owner,
            ttl,
        )

    def acquire(self, now: datetime) -> bool:
        return try_lease_lock(self.engine, self.dialect, self.name, self.owner, now, self.ttl)

    def renew(self, now: datetime) -> None:
        if not self.acquire(now):
            raise LockLost(
                f"the capture lock `{self.name}` was taken over by another process "
                "(lease ran out); stopping after the pages already committed"
            )

    def release(self) -> None:
        release_lease_lock(self.engine, self.name, self.owner)


_KEY_SQL = "hashtextextended(current_schema() || ':' || :name, 0)"


class AdvisoryLock:
    """`pg_try_advisory_lock` on a dedicated connection held until release (or process death)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self._conn: Connection | None = None

    def acquire(self, now: datetime) -> bool:
        conn = self.engine.connect()
        try:
            got = bool(
                conn.execute(
                    sa.text(f"SELECT pg_try_advisory_lock({_KEY_SQL})"), {"name": self.name}
                ).scalar()
            )
            conn.commit()  # the lock is session-level; do not sit idle in a transaction
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def renew(self, now: datetime) -> None:
        """Prove the lock connection is still alive (a terminated backend released the lock)."""
        if self._conn is None:
            raise LockLost(f"the capture lock `{self.name}` is not held")
        try:
            held = self._conn.execute(
                sa.text(
                    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid()"
                )
            ).first()
            self._conn.commit()
        except Exception as exc:  # noqa: BLE001 - any failure means the session is gone
            self._drop()
            raise LockLost(
                f"the database connection holding the capture lock `{self.name}` was lost "
                f"({type(exc).__name__}); stopping after the pages already committed"
            ) from None
        if held is None:
            self._drop()
            raise LockLost(f"the capture lock `{self.name}` is no longer held")

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(
                sa.text(f"SELECT pg_advisory_unlock({_KEY_SQL})"), {"name": self.name}
            )
            self._conn.commit()
        except Exception:  # noqa: BLE001 - a dead session already released its locks
            self._drop()
            return
        self._conn.close()
        self._conn = None

    def _drop(self) -> None:
        """Throw the connection away (never back to the pool: its session state is unknown)."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self._conn = None
