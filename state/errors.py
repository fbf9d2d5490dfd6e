"""What a person reads when the state database cannot be used, instead of a SQLAlchemy traceback.

A state database is either not usable as configured (not a database, damaged, read-only,
missing tables, a newer schema): fix the setup, exit 2 like any config error. Or it is
unreachable right now (PostgreSQL down, connection refused, lost mid-command): exit 1, like a
run that failed, because the same command will work once the database is back.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from ga4sync.core.errors import Ga4SyncError
from sqlalchemy.engine import make_url

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


class StateStoreError(Ga4SyncError):
    """The state database could not be used; the message names the database and what to do."""

    def __init__(self, message: str, *, exit_code: int = UNAVAILABLE) -> None:
        self.exit_code = exit_code
        self.problems = [message]
        super().__init__(message)


def safe_url(url: str) -> str:
    """The state URL with any password hidden (it may be in `postgresql://user:pw@host`)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported elsewhere
        return "(unparsable state URL)"


def driver_message(exc: BaseException) -> str:
    """The database's own words, first line, without SQL, parameters or SQLAlchemy links."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0].strip() if text else type(orig).__name__


def describe(exc: sa.exc.SQLAlchemyError, url: str | None) -> StateStoreError:
    """Turn a database error into the message and exit code a person can act on."""
    message = driver_message(exc)
    lowered = message.lower()
    where = f"state database {safe_url(url)}" if url else "the state database"
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
