"""Small SQL helpers both halves of the store share (no state of their own)."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
DISCONNECT_RETRIES = 2


_STABLE_JSON = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))
"""What `json.dumps` builds on every call with these options, built once (rows by thousands)."""


def to_json(value: Any) -> str:
    """Stable JSON for stored payloads and records: sorted keys, so equal rows compare equal."""
    return _STABLE_JSON.encode(value)


def insert_ignore(conn: Connection, dialect: str, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was new.

    Re-reading the same CRM page must be harmless, so the database (not a read-then-write in
    Python) decides which copy wins when two captures race.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table).values(**values).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    return bool(conn.execute(stmt).rowcount)


def retry_on_disconnect(fn: F) -> F:
    """Run a one-transaction store operation again when the database dropped the connection.

    Safe for the operations it wraps because each is one transaction whose retry cannot send or
    capture twice: inserts are ON CONFLICT DO NOTHING, the watermark only moves forward, settling
    matches only rows still held by its claim, and a claim whose commit was lost leaves its rows
    `sending` until the lease turns them `unknown` (listed, never silently resent). A dropped
    connection (PostgreSQL restarted, failover, `pg_terminate_backend`) then costs a reconnect
    instead of the whole run; anything else, or a third drop in a row, is raised.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(DISCONNECT_RETRIES + 1):
            try:
                return fn(*args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated or attempt == DISCONNECT_RETRIES:
                    raise
                log.warning("database connection lost (%s); retrying", type(exc.orig).__name__)
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    return wrapper  # type: ignore[return-value]
