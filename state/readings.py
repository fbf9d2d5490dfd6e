"""The figures `status`, `report`, `/healthz` and backfill summaries read, as typed rows.

A mixin of `StateStore` (it needs `engine` and `version`): the SQL of every read-only view of
the store lives here, so the layers above see frozen dataclasses and never a table. Big
results are streamed (`yield_per`): an outbox holds millions of rows after months.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.owners import ProcessOwner
from sqlalchemy.engine import Engine

STREAM_ROWS = 2000


def _money(payload: str | None) -> list[tuple[str | None, float | None]]:
    """(currency, value) of the event in a stored payload (`ga4.payload.stored_payload`)."""
    try:
        body = json.loads(payload or "{}")
    except ValueError:
        return []
    event = body.get("event") if isinstance(body, dict) else None
    params = event.get("params") if isinstance(event, dict) else None
    out: list[tuple[str | None, float | None]] = []
    if isinstance(params, dict):
        value, currency = params.get("value"), params.get("currency")
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((currency if isinstance(currency, str) else None, float(value)))
    return out


@dataclass(frozen=True)
class SentEvent:
    """One `sent` outbox row: when the CRM change happened and when GA4 accepted it."""

    connector: str
    event_name: str | None
    changed_at: datetime
    sent_at: datetime
    has_session: bool
    """The payload carried a session id (could join the web session)."""

    @property
    def lag_s(self) -> float:
        return max(0.0, (self.sent_at - self.changed_at).total_seconds())


@dataclass(frozen=True)
class DeliveryDelay:
    """One row a live poll captured and GA4 accepted: CRM change time -> GA4's 2xx."""

    connector: str
    changed_at: datetime
    sent_at: datetime

    @property
    def delay_s(self) -> float:
        return max(0.0, (self.sent_at - self.changed_at).total_seconds())


@dataclass(frozen=True)
class SentValue:
    """The `value` and `currency` params of one sent event (None when it carried none)."""

    connector: str
    currency: str | None
    value: float | None


@dataclass(frozen=True)
class StageClientIds:
    """Transitions of one connector and stage a rule wanted to send, by client-id outcome."""

    connector: str
    stage: str
    total: int
    missing: int
    """Skipped `no_client_id`."""
    bad: int
    """Skipped `bad_client_id`."""


@dataclass(frozen=True)
class QueueCount:
    connector: str
    status: str
    count: int


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`."""

    id: int
    connector: str
    kind: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    captured: int
    rejected: int
    api_calls: int
    api_used: int | None
    api_limit: int | None
    error: str | None
    warnings: list[str]
    owner: ProcessOwner | None
    """Who ran it; None for runs written before schema version 2."""
    heartbeat_at: datetime | None
    """Start, then each committed page; None before schema version 2."""


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox row as `outbox list/show`, the demo and tests read it.

    Columns a store's schema version lacks (`send_started_at`, `live`) are None, and so are
    `record_json` / `payload` when a listing leaves them out (they are the big ones)."""

    key: str
    connector: str
    object_type: str
    record_id: str
    field: str
    from_value: str | None
    to_value: str
    changed_at: datetime
    detected_by: str
    source_ref: str | None
    rule: str | None
    event_name: str | None
    payload: str | None
    group_key: str | None
    once_key: str | None
    resend_if_unknown: bool
    mapping_path: str | None
    mapping_hash: str | None
    record_json: str | None
    status: str
    reason: str | None
    attempts: int
    next_attempt_at: datetime | None
    claim_token: str | None
    lease_until: datetime | None
    send_started_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    scope: str
    live: bool | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> OutboxEntry:
        """From a selected row; the columns it lacks are None, times are UTC."""
        values: dict[str, Any] = {f: row.get(f) for f in _OUTBOX_FIELDS}
        for name in _OUTBOX_TIMES:
            values[name] = _utc(values[name])
        values["resend_if_unknown"] = bool(values["resend_if_unknown"])
        values["attempts"] = int(values["attempts"] or 0)
        return cls(**values)


@dataclass(frozen=True)
class AttemptEntry:
    """One request attempt of an outbox row (`outbox show`'s attempt log)."""

    id: int
    key: str
    attempted_at: datetime
    outcome: str
    http_status: int | None
    detail: str | None
    """GA4's answer (or the transport error), free of secrets."""
    payload: str | None
    """The request body as sent."""


@dataclass(frozen=True)
class Watermark:
    """Where a connector's reads of one object (and scope) resume."""

    connector: str
    object_type: str
    scope: str
    value: datetime
    updated_at: datetime


def _utc(value: datetime | None) -> datetime | None:
    return ensure_utc(value) if value is not None else None


@dataclass(frozen=True)
class RowOutcome:
    """Where one outbox row stands: its connector, status and why."""

    connector: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class FailedAttempt:
    attempted_at: datetime
    outcome: str
    http_status: int | None


_OUTBOX_FIELDS = tuple(f.name for f in fields(OutboxEntry))
_OUTBOX_TIMES = (
    "changed_at", "next_attempt_at", "lease_until", "send_started_at", "created_at",
    "updated_at", "sent_at",
)  # fmt: skip


def run_record(m: Mapping[Any, Any], version: int) -> RunRecord:
    """A `runs` row as read at schema `version` (owner columns since version 2)."""
    owner = None
    if version >= 2 and m["owner_host"] is not None and m["owner_pid"] is not None:
        owner = ProcessOwner(m["owner_host"], int(m["owner_pid"]), m["owner_started"])
    heartbeat = m["heartbeat_at"] if version >= 2 else None
    return RunRecord(
        id=int(m["id"]),
        connector=m["connector"],
        kind=m["kind"],
        started_at=ensure_utc(m["started_at"]),
        finished_at=ensure_utc(m["finished_at"]) if m["finished_at"] else None,
        status=m["status"],
        captured=int(m["captured"] or 0),
        rejected=int(m["rejected"] or 0),
        api_calls=int(m["api_calls"] or 0),
        api_used=m["api_used"],
        api_limit=m["api_limit"],
        error=m["error"],
        warnings=[w for w in (m["warnings"] or "").split("\n") if w.strip()],
        owner=owner,
        heartbeat_at=ensure_utc(heartbeat) if heartbeat else None,
    )


def run_columns(version: int) -> list[sa.Column[Any]]:
    """The `runs` columns a store at `version` has."""
    return [c for c in s.runs.c if version >= 2 or c.name not in s.RUN_OWNER_COLUMNS]


class StoreReadings:
    engine: Engine
    version: int

    # -- GA4 deliveries --------------------------------------------------------------------
    def iter_sent(self, start: datetime, end: datetime | None = None) -> Iterator[SentEvent]:
        """Sent outbox rows whose GA4 answer came in [start, end), streamed."""
        o = s.outbox
        has_session = o.c.payload.like('%"session_id"%')
        q = sa.select(
            o.c.connector, o.c.event_name, o.c.changed_at, o.c.sent_at, has_session
        ).where(o.c.status == Status.SENT.value, o.c.sent_at.is_not(None), o.c.sent_at >= start)
        if end is not None:
            q = q.where(o.c.sent_at < end)
        with self.engine.connect() as conn:
            for r in conn.execution_options(yield_per=STREAM_ROWS).execute(q):
                yield SentEvent(r[0], r[1], ensure_utc(r[2]), ensure_utc(r[3]), bool(r[4]))

    def iter_delays(self, start: datetime, end: datetime | None = None) -> Iterator[DeliveryDelay]:
        """Rows captured by live polls that GA4 accepted in [start, end), streamed.

        A first sync of old history and backfills are left out (`outbox.live`): their delay
        is the age of the history, not how long a new CRM move waits. A store older than
        schema version 4 has nothing to tell.
        """
        if self.version < s.LIVE_VERSION:
            return
        o = s.outbox
        q = sa.select(o.c.connector, o.c.changed_at, o.c.sent_at).where(
            o.c.status == Status.SENT.value,
            o.c.live.is_(True),
            o.c.sent_at.is_not(None),
            o.c.sent_at >= start,
        )
        if end is not None:
            q = q.where(o.c.sent_at < end)
        with self.engine.connect() as conn:
            for name, changed, sent in conn.execution_options(yield_per=STREAM_ROWS).execute(q):
                yield DeliveryDelay(str(name), ensure_utc(changed), ensure_utc(sent))

    def iter_sent_values(self, start: datetime, end: datetime) -> Iterator[SentValue]:
        """Per sent event in [start, end), the money it carried, streamed."""
        o = s.outbox
        q = sa.select(o.c.connector, o.c.payload).where(
            o.c.status == Status.SENT.value,
            o.c.sent_at.is_not(None),
            o.c.sent_at >= start,
            o.c.sent_at < end,
            o.c.payload.like('%"value"%'),
        )
        with self.engine.connect() as conn:
            for name, payload in conn.execution_options(yield_per=STREAM_ROWS).execute(q):
                for currency, value in _money(payload):
                    yield SentValue(str(name), currency, value)

    def client_id_counts(
        self, start: datetime, end: datetime | None = None
    ) -> list[StageClientIds]:
        """Per connector and stage, transitions captured in [start, end) a rule wanted to send.

        Moves no rule maps and CRM records the connector could not read are left out: they
        say nothing about whether the web form saved the GA client id.
        """
        o = s.outbox
        reason = sa.func.coalesce(o.c.reason, "")
        missing = sa.func.sum(sa.case((reason.like("no_client_id%"), 1), else_=0))
        bad = sa.func.sum(sa.case((reason.like("bad_client_id%"), 1), else_=0))
        q = (
            sa.select(o.c.connector, o.c.to_value, sa.func.count(), missing, bad)
            .where(
                o.c.created_at >= start,
                o.c.field != "",  # a CRM record the connector could not read
                ~reason.like("no_rule%"),
                ~reason.like("malformed CRM record%"),
            )
            .group_by(o.c.connector, o.c.to_value)
            .order_by(o.c.connector, o.c.to_value)
        )
        if end is not None:
            q = q.where(o.c.created_at < end)
        with self.engine.connect() as conn:
            return [
                StageClientIds(str(name), str(stage), int(total), int(miss or 0), int(wrong or 0))
                for name, stage, total, miss, wrong in conn.execute(q)
            ]

    def queue_counts(self) -> list[QueueCount]:
        """Outbox rows per connector and status, as they are now."""
        o = s.outbox
        q = sa.select(o.c.connector, o.c.status, sa.func.count()).group_by(
            o.c.connector, o.c.status
        )
        with self.engine.connect() as conn:
            return [QueueCount(str(n), str(st), int(c)) for n, st, c in conn.execute(q)]

    def next_retries(self) -> dict[str, datetime]:
        """Per connector, when its earliest `retry` row goes next (what `status` tells a
        person waiting for a retry)."""
        o = s.outbox
        q = (
            sa.select(o.c.connector, sa.func.min(o.c.next_attempt_at))
            .where(o.c.status == Status.RETRY.value, o.c.next_attempt_at.is_not(None))
            .group_by(o.c.connector)
        )
        with self.engine.connect() as conn:
            return {str(n): ensure_utc(at) for n, at in conn.execute(q) if at is not None}

    def iter_outcomes(self, start: datetime, end: datetime) -> Iterator[RowOutcome]:
        """Rows captured in [start, end) that were not sent, streamed."""
        o = s.outbox
        q = sa.select(o.c.connector, o.c.status, o.c.reason).where(
            o.c.created_at >= start, o.c.created_at < end, o.c.status != Status.SENT.value
        )
        with self.engine.connect() as conn:
            for name, status, reason in conn.execution_options(yield_per=STREAM_ROWS).execute(q):
                yield RowOutcome(name, status, reason)

    def iter_failed_attempts(self, start: datetime, end: datetime) -> Iterator[FailedAttempt]:
        """Attempts made in [start, end) that did not end `sent`, streamed."""
        a = s.attempts
        q = sa.select(a.c.attempted_at, a.c.outcome, a.c.http_status).where(
            a.c.attempted_at >= start, a.c.attempted_at < end, a.c.outcome != Status.SENT.value
        )
        with self.engine.connect() as conn:
            for at, outcome, http_status in conn.execution_options(yield_per=STREAM_ROWS).execute(
                q
            ):
                yield FailedAttempt(ensure_utc(at), outcome, http_status)

    # -- a backfill's scope ----------------------------------------------------------------
    def iter_scope_outcomes(self, scope: str, connector: str) -> Iterator[RowOutcome]:
        """Every row of one backfill scope, streamed (backfills can be big)."""
        o = s.outbox
        q = sa.select(o.c.connector, o.c.status, o.c.reason).where(
            o.c.scope == scope, o.c.connector == connector
        )
        with self.engine.connect() as conn:
            for name, status, reason in conn.execution_options(yield_per=5000).execute(q):
                yield RowOutcome(name, status, reason)

    def count_due(self, scope: str, connector: str) -> int:
        """Rows of one scope waiting to be sent (pending or retry), due or not."""
        o = s.outbox
        q = sa.select(sa.func.count()).where(
            o.c.scope == scope,
            o.c.connector == connector,
            o.c.status.in_([Status.PENDING.value, Status.RETRY.value]),
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    # -- runs ------------------------------------------------------------------------------
    def last_run(self, connector: str) -> RunRecord | None:
        r = s.runs
        q = (
            sa.select(*run_columns(self.version))
            .where(r.c.connector == connector)
            .order_by(r.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else run_record(row._mapping, self.version)

    def last_ok_finish(self, connector: str) -> datetime | None:
        """When the connector's newest successful run (of any kind) finished."""
        r = s.runs
        q = sa.select(sa.func.max(r.c.finished_at)).where(
            r.c.connector == connector, r.c.status == "ok"
        )
        with self.engine.connect() as conn:
            value = conn.execute(q).scalar()
        return ensure_utc(value) if value else None

    def had_ok_capture(self, connector: str) -> bool:
        """Whether a capture run (not a backfill) of the connector ever finished `ok`: after
        one, a poll finds new moves rather than the old history of a first sync."""
        r = s.runs
        q = (
            sa.select(r.c.id)
            .where(
                r.c.connector == connector,
                r.c.status == "ok",
                r.c.kind != "backfill",
                r.c.finished_at.is_not(None),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def last_capture_successes(self, connectors: Sequence[str]) -> dict[str, datetime]:
        """Newest finished successful capture run per connector (backfills do not count)."""
        r = s.runs
        q = (
            sa.select(r.c.connector, sa.func.max(r.c.finished_at))
            .where(
                r.c.connector.in_(list(connectors)),
                r.c.status == "ok",
                r.c.kind != "backfill",
                r.c.finished_at.is_not(None),
            )
            .group_by(r.c.connector)
        )
        with self.engine.connect() as conn:
            return {str(name): ensure_utc(at) for name, at in conn.execute(q)}
