"""From `state.url` to a SQLAlchemy engine: refuse stores that keep nothing, open read-only.

A state store that does not persist (an unset template `sqlite:///`, `sqlite://`, an
in-memory SQLite) forgets every transition when the process ends, so each run would send
everything the CRM still shows again: refused before any connection is made.

Read-only engines (for `status`, `report`, `outbox list/show`) never write: SQLite is opened
with `mode=ro` (so a new path is never created and a file mode 0444 or a read-only folder
works) and without the WAL switch and `BEGIN IMMEDIATE` a writer needs.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from ga4sync.core.errors import ConfigError
from ga4sync.state.errors import NoStateYet
from sqlalchemy.engine import URL, Connection, Engine, make_url

WAL_SWITCH_TRIES = 100


def parse_state_url(url: str) -> URL:
    """The URL with `postgresql://` meaning psycopg 3; a store that keeps nothing is refused."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - any bad URL is a config error
        raise ConfigError(f"state.url is not a usable database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = (
            database in ("", ":memory:")
            or database.startswith("file::memory:")
            or "memory" in parsed.query.get("mode", ())
        )
        if in_memory:
            raise ConfigError(
                f"state.url `{url}` keeps no state (an in-memory SQLite database is gone when "
                "the process ends, so every run would send everything again); give a file, "
                "e.g. sqlite:///ga4sync.db, or a PostgreSQL URL"
            )
    return parsed


def create_engine(url: str, *, read_only: bool = False) -> Engine:
    """A writer's engine, or a reader's that cannot create or change anything."""
    parsed = parse_state_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if read_only:
            parsed = _sqlite_read_only(parsed, url)
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any bad URL is a config error
        raise ConfigError(f"state.url is not a usable database URL: {exc}") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_reader if read_only else _sqlite_pragmas)
        if not read_only:
            sa.event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_read_only(parsed: URL, url: str) -> URL:
    """`file:PATH?mode=ro&uri=true`: SQLite then refuses (never creates) a missing file."""
    database = parsed.database or ""
    if database.startswith("file:"):
        return parsed.update_query_dict({"mode": "ro", "uri": "true"})
    path = Path(database)
    if not path.exists():
        raise NoStateYet(url, f"the file {path} does not exist")
    return parsed.set(database=f"file:{quote(str(path.resolve()))}").update_query_dict(
        {"mode": "ro", "uri": "true"}
    )


def _sqlite_reader(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy manage transactions, so BEGIN IMMEDIATE below is the only BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    _wal_mode(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


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
