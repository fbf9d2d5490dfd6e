"""Rows held by a sender's lease: `sending` rows, and when their lease ends.

After a SIGKILL nothing is sending, yet the dead run's rows stay `sending` until their lease
runs out; `status` and `run` say how many and when they come back, so the totals add up and
nobody resends them by hand in the meantime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class HeldRows:
    connector: str
    rows: int
    first_back_at: datetime | None
    """When the earliest lease ends (a killed run's rows then go back to pending or unknown)."""
    last_back_at: datetime | None
    """When the last one ends."""


def held_rows(engine: Engine, connectors: list[str] | None = None) -> list[HeldRows]:
    """`sending` rows per connector with their lease ends (one grouped read)."""
    o = s.outbox
    q = (
        sa.select(
            o.c.connector,
            sa.func.count(),
            sa.func.min(o.c.lease_until),
            sa.func.max(o.c.lease_until),
        )
        .where(o.c.status == Status.SENDING.value)
        .group_by(o.c.connector)
        .order_by(o.c.connector)
    )
    if connectors:
        q = q.where(o.c.connector.in_(connectors))
    with engine.connect() as conn:
        return [
            HeldRows(
                str(name),
                int(count),
                ensure_utc(first) if first is not None else None,
                ensure_utc(last) if last is not None else None,
            )
            for name, count, first, last in conn.execute(q)
        ]
