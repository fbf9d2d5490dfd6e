"""Reading the outbox and a person's actions on it: list, show, resend, discard, prune.

A mixin of `StateStore` (it needs only `engine`), kept apart so the capture/delivery hot path in
store.py stays small. Nothing here ever touches a row that is `sending`: that row belongs to a
live claim (or will become `unknown` when its lease runs out).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.readings import (
    AttemptEntry,
    OutboxEntry,
    RunRecord,
    Watermark,
    run_columns,
    run_record,
)
from ga4sync.state.sql import to_json
from sqlalchemy.engine import Engine

RESOLVED = (Status.SENT, Status.SKIPPED, Status.INVALID, Status.DISCARDED, Status.DEAD)
ONCE_BLOCKING = (Status.PENDING, Status.SENDING, Status.SENT, Status.RETRY, Status.UNKNOWN)
"""A row in one of these states counts as "already sent (or being sent)" for once_per_record."""

RESENDABLE = (
    Status.UNKNOWN,
    Status.DEAD,
    Status.RETRY,
    Status.INVALID,
    Status.SKIPPED,
    Status.DISCARDED,
)
"""`sent` is not here on purpose: GA4 has no idempotency key, so a resend of a sent row is a
second conversion. `pending`/`sending` are already on their way."""


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    kept_for_once: int
    """Old resolved rows kept because they are the `sent` row a once_per_record check needs."""
    kept_in_window: int
    """Old resolved rows kept because a connector may still re-read their CRM change."""


class OutboxAdmin:
    engine: Engine
    version: int

    # -- reading ---------------------------------------------------------------------------
    def list_outbox(
        self,
        *,
        statuses: Sequence[str] | None = None,
        connector: str | None = None,
        keys: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[OutboxEntry]:
        o = s.outbox
        columns = s.outbox_columns(self.version)
        q = sa.select(*columns).order_by(o.c.changed_at, o.c.key)
        if statuses:
            q = q.where(o.c.status.in_(list(statuses)))
        if connector:
            q = q.where(o.c.connector == connector)
        if keys:
            q = q.where(o.c.key.in_(list(keys)))
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [OutboxEntry.of(r._mapping) for r in conn.execute(q)]

    def iter_outbox_summary(
        self,
        *,
        statuses: Sequence[str] | None = None,
        connector: str | None = None,
        limit: int | None = None,
        with_payload: bool = False,
    ) -> Iterator[OutboxEntry]:
        """`outbox list` rows, streamed and without the CRM record (and, unless asked for,
        the payload) columns: those fields are None.

        An outbox holds millions of rows after months; listing them must not load them all
        (nor their stored CRM records) into memory at once.
        """
        o = s.outbox
        left_out = {"record_json"} if with_payload else {"record_json", "payload"}
        columns = s.outbox_columns(self.version, leave_out=frozenset(left_out))
        q = self._outbox_filter(sa.select(*columns), statuses, connector)
        q = q.order_by(o.c.changed_at, o.c.key)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            for r in conn.execution_options(yield_per=2000).execute(q):
                yield OutboxEntry.of(r._mapping)

    def count_outbox(
        self, *, statuses: Sequence[str] | None = None, connector: str | None = None
    ) -> int:
        q = self._outbox_filter(
            sa.select(sa.func.count()).select_from(s.outbox), statuses, connector
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    @staticmethod
    def _outbox_filter(
        q: sa.Select[Any], statuses: Sequence[str] | None, connector: str | None
    ) -> sa.Select[Any]:
        o = s.outbox
        if statuses:
            q = q.where(o.c.status.in_(list(statuses)))
        if connector:
            q = q.where(o.c.connector == connector)
        return q

    def resolve_keys(self, prefixes: Sequence[str]) -> tuple[list[str], list[str]]:
        """Full keys for what a person typed (a key or a unique prefix of at least 8 chars).

        Returns (keys found, problems), one problem per prefix that matched none or several.
        """
        o = s.outbox
        found: list[str] = []
        problems: list[str] = []
        with self.engine.connect() as conn:
            for prefix in prefixes:
                if len(prefix) >= 64:
                    hits = list(conn.execute(sa.select(o.c.key).where(o.c.key == prefix)).scalars())
                elif len(prefix) < 8:
                    problems.append(f"{prefix}: give at least 8 characters of the key")
                    continue
                else:
                    hits = list(
                        conn.execute(
                            sa.select(o.c.key)
                            .where(o.c.key.startswith(prefix, autoescape=True))
                            .limit(2)
                        ).scalars()
                    )
                if not hits:
                    problems.append(f"{prefix}: no outbox row has this key")
                elif len(hits) > 1:
                    problems.append(f"{prefix}: matches several rows; give more of the key")
                else:
                    found.append(hits[0])
        return found, problems

    def keys_with_status(self, statuses: Sequence[str], connector: str | None = None) -> list[str]:
        o = s.outbox
        q = sa.select(o.c.key).where(o.c.status.in_(list(statuses))).order_by(o.c.key)
        if connector:
            q = q.where(o.c.connector == connector)
        with self.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def count_by_status(self, connector: str | None = None) -> dict[str, int]:
        o = s.outbox
        q = sa.select(o.c.status, sa.func.count()).group_by(o.c.status)
        if connector:
            q = q.where(o.c.connector == connector)
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(q)}

    def attempts_for(self, key: str) -> list[AttemptEntry]:
        a = s.attempts
        q = sa.select(a).where(a.c.key == key).order_by(a.c.id)
        with self.engine.connect() as conn:
            return [
                AttemptEntry(
                    id=int(r.id),
                    key=r.key,
                    attempted_at=ensure_utc(r.attempted_at),
                    outcome=r.outcome,
                    http_status=r.http_status,
                    detail=r.detail,
                    payload=r.payload,
                )
                for r in conn.execute(q)
            ]

    def last_runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest runs first, of every connector."""
        q = sa.select(*run_columns(self.version)).order_by(s.runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [run_record(r._mapping, self.version) for r in conn.execute(q)]

    def watermarks(self) -> list[Watermark]:
        w = s.watermarks
        q = sa.select(w.c.connector, w.c.object_type, w.c.scope, w.c.value, w.c.updated_at)
        with self.engine.connect() as conn:
            return [
                Watermark(name, obj, scope, ensure_utc(value), ensure_utc(updated))
                for name, obj, scope, value, updated in conn.execute(q)
            ]

    # -- operator actions ------------------------------------------------------------------
    def resend(self, keys: Sequence[str], now: datetime, reason: str) -> int:
        """Put rows back in the queue; a person decided (e.g. after checking GA4 for unknowns)."""
        o = s.outbox
        return self._decide(
            keys,
            [o.c.status.in_([st.value for st in RESENDABLE]), o.c.payload.is_not(None)],
            {
                "status": Status.PENDING.value,
                "next_attempt_at": now,
                "updated_at": now,
                "claim_token": None,
                "lease_until": None,
                "reason": reason,
            },
        )

    def requeue_too_old(
        self,
        connectors: Sequence[str],
        now: datetime,
        *,
        scope: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> int:
        """Queue rows skipped `too_old` again, to be sent at now-72h (`--old-events clamp`).

        A person asked for it, so this covers rows earlier runs skipped: without it the advice
        "use --old-events clamp" did nothing for them (they are already in the outbox, and a
        re-read is a duplicate). Such a row was never sent: the 72 h check comes before any
        request. Each row gets `crm_changed_at` in its stored params, which is also what tells
        delivery to send it clamped, whichever process (a daemon set to `skip`) claims it.
        once_per_record still holds: a row whose event was sent (or is on its way) for the
        record stays skipped, and of several such rows only the earliest goes.
        """
        o = s.outbox
        other = o.alias("other")
        taken = sa.exists(
            sa.select(other.c.key).where(
                other.c.once_key == o.c.once_key,
                other.c.status.in_([st.value for st in ONCE_BLOCKING]),
            )
        )
        where = [
            o.c.status == Status.SKIPPED.value,
            o.c.reason.like("too_old:%"),
            o.c.payload.is_not(None),
            o.c.connector.in_(list(connectors)),
            sa.or_(o.c.once_key.is_(None), ~taken),
        ]
        if scope is not None:
            where.append(o.c.scope == scope)
        if start is not None:
            where.append(o.c.changed_at >= start)
        if end is not None:
            where.append(o.c.changed_at < end)
        query = sa.select(o.c.key, o.c.payload, o.c.changed_at, o.c.once_key).where(*where)
        once_seen: set[str] = set()
        changed = 0
        with self.engine.begin() as conn:
            for row in conn.execute(query.order_by(o.c.changed_at, o.c.key)).all():
                if row.once_key is not None:
                    if row.once_key in once_seen:
                        continue
                    once_seen.add(row.once_key)
                changed += self._requeue_one(conn, row.key, row.payload, row.changed_at, now)
        return changed

    def _requeue_one(
        self, conn: sa.Connection, key: str, payload: str, changed_at: datetime, now: datetime
    ) -> int:
        o = s.outbox
        doc = json.loads(payload)
        event = doc.setdefault("event", {})
        params = event.setdefault("params", {})
        when = changed_at if changed_at.tzinfo else changed_at.replace(tzinfo=UTC)
        params.setdefault("crm_changed_at", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        result = conn.execute(
            sa.update(o)
            .where(o.c.key == key, o.c.status == Status.SKIPPED.value)
            .values(
                status=Status.PENDING.value,
                payload=to_json(doc),
                next_attempt_at=now,
                updated_at=now,
                claim_token=None,
                lease_until=None,
                reason="was too_old; queued again to send at now-72h (--old-events clamp)",
            )
        )
        return int(result.rowcount or 0)

    def discard(self, keys: Sequence[str], now: datetime, reason: str) -> int:
        o = s.outbox
        return self._decide(
            keys,
            [o.c.status != Status.SENT.value, o.c.status != Status.SENDING.value],
            {"status": Status.DISCARDED.value, "updated_at": now, "reason": f"discarded: {reason}"},
        )

    def _decide(self, keys: Sequence[str], allowed: list[Any], values: dict[str, Any]) -> int:
        """Apply a person's decision to the rows it may touch, in key chunks (PostgreSQL takes
        at most 65,535 parameters), all in one transaction: all of the decision or none."""
        o = s.outbox
        changed = 0
        with self.engine.begin() as conn:
            for chunk in _chunks(keys):
                result = conn.execute(
                    sa.update(o).where(o.c.key.in_(list(chunk)), *allowed).values(**values)
                )
                changed += int(result.rowcount or 0)
        return changed

    def prune(
        self, *, older_than: datetime, keep_since: dict[str, datetime], dry_run: bool = False
    ) -> PruneResult:
        """Delete resolved rows last touched before `older_than`, except what dedup needs.

        The rule, and why:
        1. Only resolved rows go (`sent`, `skipped`, `invalid`, `discarded`, `dead`). `pending`,
           `retry`, `sending` and `unknown` are work or a decision still to make.
        2. A `sent` row with a `once_key` stays: it is what tells capture "this record already
           converted" (once_per_record). Deleting it would let Won -> Lost -> Won send again.
        3. A row whose CRM change happened at or after `keep_since[connector]` stays: that
           connector may still re-read the change (its watermark minus its overlap / initial
           lookback, computed by the caller from the config), and the row's key is what makes
           the re-read a duplicate instead of a new send. Rows of a connector not in
           `keep_since` (removed from the config) follow rules 1-2 only.
        Their attempts go with them. Outside these windows a re-read change is older than
        GA4's 72 h backdating window and is skipped `too_old` (unless a backfill explicitly
        asks `--old-events=clamp` over a pruned period: that is a person's decision).
        """
        o = s.outbox
        old = sa.and_(
            o.c.status.in_([st.value for st in RESOLVED]),
            o.c.updated_at < older_than,
        )
        once_needed = sa.and_(o.c.status == Status.SENT.value, o.c.once_key.is_not(None))
        window_terms = [
            sa.and_(o.c.connector == name, o.c.changed_at >= since)
            for name, since in keep_since.items()
        ]
        in_window = sa.or_(*window_terms) if window_terms else sa.false()
        with self.engine.begin() as conn:
            kept_once = conn.execute(
                sa.select(sa.func.count()).select_from(o).where(old, once_needed)
            ).scalar_one()
            kept_window = conn.execute(
                sa.select(sa.func.count())
                .select_from(o)
                .where(old, sa.not_(once_needed), in_window)
            ).scalar_one()
            doomed = sa.and_(old, sa.not_(once_needed), sa.not_(in_window))
            if dry_run:
                would = conn.execute(sa.select(sa.func.count()).select_from(o).where(doomed))
                return PruneResult(int(would.scalar_one()), int(kept_once), int(kept_window))
            conn.execute(
                sa.delete(s.attempts).where(s.attempts.c.key.in_(sa.select(o.c.key).where(doomed)))
            )
            deleted = conn.execute(sa.delete(o).where(doomed)).rowcount
        return PruneResult(int(deleted or 0), int(kept_once), int(kept_window))


KEY_CHUNK = 5000
"""Keys per statement: PostgreSQL takes at most 65,535 parameters in one, and `outbox resend
--status unknown` after months can name more rows than that."""


def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(keys), KEY_CHUNK):
        yield keys[i : i + KEY_CHUNK]
