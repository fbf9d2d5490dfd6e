"""Which transition keys are already in the outbox, for a dry run that must write nothing.

Lenient where a status would refuse: an absent SQLite file, a database without an outbox
table, a schema this ga4sync does not know: in each, what is in the outbox (if anything) is
still readable, and "nothing captured yet" is the truth when there is none. A database that
cannot be read at all is an error: "already in outbox 0" from it would be a lie.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from ga4sync.state import schema
from ga4sync.state.connect import create_engine
from ga4sync.state.errors import NoStateYet, describe
from sqlalchemy.engine import Engine

KEY_CHUNK = 500


class OutboxKeyLookup:
    """Read-only look-ups of outbox keys; no migrations, no new database file."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> OutboxKeyLookup:
        try:
            engine = create_engine(url, read_only=True)
        except NoStateYet:
            return cls(None)
        try:
            with engine.connect() as conn:
                has_outbox = sa.inspect(conn).has_table(schema.outbox.name)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise describe(exc, url) from None
        if not has_outbox:
            engine.dispose()  # nothing was captured yet
            return cls(None)
        return cls(engine)

    def known(self, keys: Sequence[str]) -> set[str]:
        if self.engine is None or not keys:
            return set()
        o = schema.outbox
        found: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(keys), KEY_CHUNK):
                chunk = list(keys[i : i + KEY_CHUNK])
                found.update(conn.execute(sa.select(o.c.key).where(o.c.key.in_(chunk))).scalars())
        return found

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def __enter__(self) -> OutboxKeyLookup:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
