"""What a person reads when the state database cannot be used, instead of a SQLAlchemy traceback.

A state database is either not usable as configured (not a database, damaged, read-only,
missing tables, a newer schema): fix the setup, exit 2 like any config error. Or it is
unreachable right now (PostgreSQL down, connection refused, lost mid-command): exit 1, like a
run that failed, because the same command will work once the database is back.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from ga4sync.core.errors import Ga4SyncError
from sqlalchemy.engine import make_url

DatabaseError = sa.exc.SQLAlchemyError
"""Any failure of the state database mid-work that no store method turned into a
`StateStoreError` (a connection dropped, locked past the busy timeout, disk full). Code outside
state/ catches this name and `describe`s it, so only the store imports the database library."""

SETUP = 2
UNAVAILABLE = 1

_SETUP_MARKERS = (
    "file is not a database",
    "database disk image is malformed",
    "readonly database",
    "read-only",
    "unable to open database file",
    "permission denied",
    "no such table",
    "authentication failed",
)
"""Driver messages that a retry will not fix; everything else counts as unavailable."""
_MISSING_DATABASE = re.compile(r'database "[^"]*" does not exist')


_DISK_FULL_MARKERS = ("database or disk is full", "no space left on device", "disk full")
"""SQLite's words (and the OS's); PostgreSQL's disk_full, SQLSTATE 53100, is `DiskFull`."""

F = TypeVar("F", bound=Callable[..., Any])


class StateStoreError(Ga4SyncError):
    """The state database could not be used; the message names the database and what to do."""

    def __init__(self, message: str, *, exit_code: int = UNAVAILABLE) -> None:
        self.exit_code = exit_code
        self.problems = [message]
        super().__init__(message)


class NoStateYet(StateStoreError):
    """A read-only command found no state database where state.url points.

    Not an empty report: a new path is most often a typo in state.url or a command run from
    the wrong folder, and creating an empty database there would hide that.
    """

    def __init__(self, url: str, what: str) -> None:
        super().__init__(
            f"there is no state yet at {safe_url(url)}: {what}. Nothing has run with this "
            "state.url (check it, and the folder you run from); `ga4sync run` creates it",
            exit_code=UNAVAILABLE,
        )


def safe_url(url: str) -> str:
    """The state URL with any password hidden (it may be in `postgresql://user:pw@host`)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported elsewhere
        return "(unparsable state URL)"


def driver_message(exc: BaseException) -> str:
    """The database's own words, first line, without SQL, parameters or SQLAlchemy links."""
    orig = exc.orig if isinstance(exc, sa.exc.StatementError) and exc.orig else exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's `database or disk is full` or PostgreSQL's disk_full (SQLSTATE 53100)."""
    orig = exc.orig if isinstance(exc, sa.exc.StatementError) else exc
    if "psycopg" in sys.modules:  # not imported: the error cannot be PostgreSQL's
        import psycopg

        if isinstance(orig, psycopg.errors.DiskFull):
            return True
    lowered = driver_message(exc).lower()
    return any(marker in lowered for marker in _DISK_FULL_MARKERS)


def describe(exc: sa.exc.SQLAlchemyError, url: str | None) -> StateStoreError:
    """Turn a database error into the message and exit code a person can act on."""
    message = driver_message(exc)
    lowered = message.lower()
    where = f"state database {safe_url(url)}" if url else "the state database"
    if is_disk_full(exc):
        return StateStoreError(
            f"{where} is out of disk space ({message}): free space on the disk that holds it "
            "(or raise the database's quota), then run again. The page being written was rolled "
            "back; the next run captures it again, nothing is lost",
            exit_code=UNAVAILABLE,
        )
    if any(marker in lowered for marker in _SETUP_MARKERS) or _MISSING_DATABASE.search(lowered):
        return StateStoreError(
            f"{where} cannot be used: {message}. Check state.url (or "
            "GA4SYNC_STATE_URL) points at a ga4sync state database that this user may write; "
            "restore it from a backup if it was damaged",
            exit_code=SETUP,
        )
    if not _is_connection_failure(exc, lowered):
        return StateStoreError(
            f"{where} refused the command: {message}. The transaction in progress was rolled back; "
            "if it happens again, report it with this message",
            exit_code=UNAVAILABLE,
        )
    return StateStoreError(
        f"{where} is not reachable: {message}. Check that the database is "
        "running and state.url (or GA4SYNC_STATE_URL) is right, then run the command again",
        exit_code=UNAVAILABLE,
    )


_CONNECTION_MARKERS = (
    "connection",
    "could not connect",
    "server closed",
    "timeout",
    "timed out",
    "database is locked",
    "terminating",
)


def _is_connection_failure(exc: sa.exc.SQLAlchemyError, lowered: str) -> bool:
    """Lost or refused connections (and a locked SQLite file): worth running again later."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) and any(
        marker in lowered for marker in _CONNECTION_MARKERS
    )


def disk_full_is_clear(fn: F) -> F:
    """A store write that hit a full disk raises `StateStoreError` saying so.

    The engine reports a `Ga4SyncError` from capture as one line on the run (no traceback, no
    "report it"): a full disk is the operator's to fix, and the rolled-back page is captured
    again by the next run. Anything else goes on unchanged.
    """

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if not is_disk_full(exc):
                raise
            raise describe(exc, str(self.engine.url)) from None

    return wrapper  # type: ignore[return-value]
