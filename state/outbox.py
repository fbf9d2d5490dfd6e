"""The delivery queue: claims with leases, settling, and leases that ran out.

A mixin of `StateStore`. A row is claimed (`sending`, claim token, lease) and committed before
any request leaves, and marked `send_started_at` (committed) right before its own request is
written. So a crash can never turn into a silent resend, and `unknown` means only what may have
gone out: an expired lease without the mark goes back to `pending` (the request never left);
with it, `unknown` (or `retry` for a purchase GA4 deduplicates by transaction_id). On PostgreSQL the
claim reads with `FOR UPDATE SKIP LOCKED`, so replicas claim disjoint rows without waiting on
each other; on SQLite `BEGIN IMMEDIATE` serializes claims.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.sql import retry_on_disconnect, to_json
from sqlalchemy.engine import Engine


@dataclass
class ClaimedRow:
    key: str
    connector: str
    event_name: str | None
    payload: dict[str, Any]
    group_key: str
    changed_at: datetime
    attempts: int
    resend_if_unknown: bool
    claim_token: str
    rule: str | None = None
    mapping_hash: str | None = None
    """Which mapping version and rule made the row: `--validate-remote` checks each pair once."""
    live: bool = False
    """Captured by a live poll: its delivery delay counts (`ga4sync_delivery_delay_seconds`)."""
    as_captured: bool = False
    """First claim of a row nobody touched since capture (no attempt, no reason: not resent,
    requeued, retried or put back): its payload is the one capture validated."""
    created_at: datetime | None = None
    """When capture wrote the row: only a row this very process captured was validated by the
    rules it runs (a row left by an older ga4sync may predate a rule)."""


@dataclass
class Settlement:
    key: str
    claim_token: str
    status: Status
    reason: str | None = None
    next_attempt_at: datetime | None = None
    http_status: int | None = None
    attempted: bool = True
    payload: dict[str, Any] | None = None
    """Replaces the stored payload (e.g. a clamped timestamp)."""
    sent_payload: dict[str, Any] | None = None
    """The secret-free request body as sent, for the audit trail."""


class DeliveryQueue:
    engine: Engine
    dialect: str

    # -- delivery --------------------------------------------------------------------------
    @retry_on_disconnect
    def expire_leases(self, now: datetime) -> int:
        """A `sending` row whose lease ran out: the request may or may not have gone out."""
        o = s.outbox
        with self.engine.begin() as conn:
            never_sent = conn.execute(
                sa.update(o)
                .where(
                    o.c.status == Status.SENDING.value,
                    o.c.lease_until < now,
                    o.c.send_started_at.is_(None),
                )
                .values(
                    status=Status.PENDING.value,
                    claim_token=None,
                    lease_until=None,
                    # The claim counted an attempt that never reached GA4.
                    attempts=sa.case((o.c.attempts > 0, o.c.attempts - 1), else_=0),
                    updated_at=now,
                    reason="lease expired before its request was sent (the sender stopped); "
                    "queued again",
                )
            ).rowcount
            resendable = conn.execute(
                sa.update(o)
                .where(
                    o.c.status == Status.SENDING.value,
                    o.c.lease_until < now,
                    o.c.resend_if_unknown.is_(True),
                )
                .values(
                    status=Status.RETRY.value,
                    next_attempt_at=now,
                    updated_at=now,
                    reason="lease expired (crash?); resending: GA4 deduplicates this "
                    "purchase by transaction_id",
                )
            ).rowcount
            held = conn.execute(
                sa.update(o)
                .where(
                    o.c.status == Status.SENDING.value,
                    o.c.lease_until < now,
                )
                .values(
                    status=Status.UNKNOWN.value,
                    updated_at=now,
                    reason="lease expired: the process stopped while sending, so GA4 may or "
                    "may not have it; `ga4sync outbox resend` or `discard`",
                )
            ).rowcount
        return int(never_sent or 0) + int(resendable or 0) + int(held or 0)

    @retry_on_disconnect
    def mark_send_started(
        self, batches: Sequence[tuple[Sequence[str], str]], now: datetime
    ) -> list[bool]:
        """Commit "this request is about to be written" for each (keys, claim token) batch.

        One transaction for many batches, so concurrent senders share one commit. A batch is
        False when any of its rows is no longer held by its claim (the lease ran out and
        another sender took it): that request must not be sent. Idempotent, so a retry after
        a dropped connection is safe.
        """
        params = [
            {"b_key": k, "b_token": token, "b_now": now} for keys, token in batches for k in keys
        ]
        if not params:
            return [True for _ in batches]
        mark, held_of = _mark_started_statements()
        with self.engine.begin() as conn:
            conn.execute(mark, params)
            held = {
                (r.key, r.claim_token)
                for r in conn.execute(held_of, {"b_keys": [p["b_key"] for p in params]})
            }
        return [all((k, token) in held for k in keys) for keys, token in batches]

    @retry_on_disconnect
    def claim_due(
        self,
        now: datetime,
        *,
        limit: int,
        lease: timedelta,
        scope: str | None = None,
        connector: str | None = None,
    ) -> list[ClaimedRow]:
        """Atomically move due rows to `sending`; replicas never claim the same row."""
        token = uuid.uuid4().hex
        due, claim, claimed = _claim_statements(self.dialect, bool(connector), bool(scope))
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if connector:
            params["b_connector"] = connector
        if scope:
            params["b_scope"] = scope
        with self.engine.begin() as conn:
            keys = list(conn.execute(due, params).scalars())
            if not keys:
                return []
            conn.execute(
                claim,
                {"b_keys": keys, "b_token": token, "b_lease_until": now + lease, "b_now": now},
            )
            rows = conn.execute(claimed, {"b_token": token}).all()
        return [
            ClaimedRow(
                key=r.key,
                connector=r.connector,
                event_name=r.event_name,
                payload=json.loads(r.payload or "{}"),
                group_key=r.group_key or "",
                changed_at=ensure_utc(r.changed_at),
                attempts=int(r.attempts),
                resend_if_unknown=bool(r.resend_if_unknown),
                claim_token=token,
                rule=r.rule,
                mapping_hash=r.mapping_hash,
                live=bool(r.live),
                as_captured=int(r.attempts) == 1 and bool(r.no_reason),
                created_at=ensure_utc(r.created_at),
            )
            for r in rows
        ]

    @retry_on_disconnect
    def settle(self, outcomes: Sequence[Settlement], now: datetime) -> None:
        """Record what happened to claimed rows; only rows still held by our claim change.

        One executemany per kind of change (not one statement per row): delivery settles
        hundreds of rows a second, and per-row statement overhead would idle the senders.
        """
        if not outcomes:
            return
        groups: dict[tuple[Status, bool, bool], list[dict[str, Any]]] = {}
        for st in outcomes:
            params: dict[str, Any] = {
                "b_key": st.key,
                "b_token": st.claim_token,
                "b_reason": st.reason,
                "b_now": now,
            }
            if st.status == Status.RETRY:
                params["b_next"] = st.next_attempt_at or now
            if st.payload is not None:
                params["b_payload"] = to_json(st.payload)
            groups.setdefault((st.status, st.payload is not None, st.attempted), []).append(params)
        attempts = [
            {
                "key": st.key,
                "attempted_at": now,
                "outcome": st.status.value,
                "http_status": st.http_status,
                "detail": st.reason,
                "payload": to_json(st.sent_payload) if st.sent_payload is not None else None,
            }
            for st in outcomes
            if st.attempted
        ]
        with self.engine.begin() as conn:
            for (status, has_payload, attempted), rows in groups.items():
                conn.execute(_settle_statement(status, has_payload, attempted), rows)
            if attempts:
                conn.execute(_insert_attempts(), attempts)


# Statements delivery runs hundreds of times a second, built once: SQLAlchemy's compiled cache
# spares the compiling, not building the statement and its cache key on every call, which
# cost about as much CPU as the database's own work here. Every value is a bound parameter.


@functools.cache
def _claim_statements(
    dialect: str, by_connector: bool, by_scope: bool
) -> tuple[sa.Select[tuple[str]], sa.Update, sa.Select[Any]]:
    """Due keys (oldest first, b_limit of them, FOR UPDATE SKIP LOCKED on PostgreSQL); their
    move to `sending` under claim b_token; the rows so claimed."""
    o = s.outbox
    waiting = [Status.PENDING.value, Status.RETRY.value]
    due = sa.select(o.c.key).where(
        o.c.status.in_(waiting), o.c.next_attempt_at <= sa.bindparam("b_now")
    )
    if by_connector:
        due = due.where(o.c.connector == sa.bindparam("b_connector"))
    if by_scope:
        due = due.where(o.c.scope == sa.bindparam("b_scope"))
    due = due.order_by(o.c.next_attempt_at, o.c.key).limit(sa.bindparam("b_limit"))
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        sa.update(o)
        .where(o.c.key.in_(sa.bindparam("b_keys", expanding=True)), o.c.status.in_(waiting))
        .values(
            status=Status.SENDING.value,
            claim_token=sa.bindparam("b_token"),
            lease_until=sa.bindparam("b_lease_until"),
            send_started_at=None,
            attempts=o.c.attempts + 1,
            updated_at=sa.bindparam("b_now"),
        )
    )
    claimed = sa.select(
        o.c.key,
        o.c.connector,
        o.c.event_name,
        o.c.payload,
        o.c.group_key,
        o.c.changed_at,
        o.c.attempts,
        o.c.resend_if_unknown,
        o.c.rule,
        o.c.mapping_hash,
        o.c.live,
        o.c.reason.is_(None).label("no_reason"),
        o.c.created_at,
    ).where(o.c.claim_token == sa.bindparam("b_token"), o.c.status == Status.SENDING.value)
    return due, claim, claimed


@functools.cache
def _mark_started_statements() -> tuple[sa.Update, sa.Select[tuple[str, str]]]:
    """Mark each (b_key, b_token) row still `sending` under its claim as written at b_now;
    then which of the keys (b_keys) are so marked."""
    o = s.outbox
    mark = (
        sa.update(o)
        .where(
            o.c.key == sa.bindparam("b_key"),
            o.c.claim_token == sa.bindparam("b_token"),
            o.c.status == Status.SENDING.value,
        )
        .values(send_started_at=sa.bindparam("b_now"))
    )
    held_of = sa.select(o.c.key, o.c.claim_token).where(
        o.c.key.in_(sa.bindparam("b_keys", expanding=True)),
        o.c.status == Status.SENDING.value,
        o.c.send_started_at.is_not(None),
    )
    return mark, held_of


@functools.cache
def _settle_statement(status: Status, has_payload: bool, attempted: bool) -> sa.Update:
    """One kind of settlement for rows still held by their claim (b_key, b_token)."""
    o = s.outbox
    values: dict[str, Any] = {
        "status": status.value,
        "reason": sa.bindparam("b_reason"),
        "updated_at": sa.bindparam("b_now"),
        "lease_until": None,
    }
    if not attempted:
        # The claim counted an attempt; nothing reached GA4 (held back after a 429, refused
        # locally), so a long rate limit cannot use up max_attempts.
        values["attempts"] = sa.case((o.c.attempts > 0, o.c.attempts - 1), else_=0)
    if status == Status.SENT:
        values["sent_at"] = sa.bindparam("b_now")
    if status == Status.RETRY:
        values["next_attempt_at"] = sa.bindparam("b_next")
    if has_payload:
        values["payload"] = sa.bindparam("b_payload")
    return (
        sa.update(o)
        .where(
            o.c.key == sa.bindparam("b_key"),
            o.c.claim_token == sa.bindparam("b_token"),
            o.c.status == Status.SENDING.value,
        )
        .values(**values)
    )


@functools.cache
def _insert_attempts() -> sa.Insert:
    return sa.insert(s.attempts)
