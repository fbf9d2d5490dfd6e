"""What `ga4sync status` shows, read from the state store with SQLAlchemy Core (read-only).

Per connector: its last run and result, the last good run, CRM API usage, the run's error and
warnings (a broken mapping edit shows here), the queue by status, freshness (CRM change -> GA4
sent), GA4 window classes of sent events, and the client-id match rate per stage.

The **client-id match rate** is the share of transitions that had a usable GA client id, among
those a mapping rule wanted to send: rows skipped with `no_client_id` or `bad_client_id` count
against it, rows with any other outcome count for it (sent, pending, too old, once per record,
a param a rule refused...). Moves no rule maps (`no_rule`) and CRM records the connector could
not read at all are left out: they say nothing about the web form. A rate far below 100% means
the form is not saving the `_ga` cookie into the CRM.

Rates, freshness and windows cover a recent period (`since`, 7 days by default) so that a fix
shows up; queue counts are as they are now.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.ga4.windows import WINDOW_ORDER, Ga4Window, classify_window
from ga4sync.pipeline.config import Config
from ga4sync.state import schema as s
from ga4sync.state.store import StateStore

QUEUE_STATES = (
    Status.PENDING,
    Status.SENDING,
    Status.RETRY,
    Status.UNKNOWN,
    Status.DEAD,
    Status.INVALID,
    Status.SKIPPED,
    Status.SENT,
    Status.DISCARDED,
)
CLIENT_ID_MISSES = ("no_client_id", "bad_client_id")


@dataclass
class RunSummary:
    """One row of `runs`, as status shows it."""

    kind: str
    started_at: datetime
    finished_at: datetime | None
    result: str
    captured: int
    rejected: int
    api_calls: int
    api_used: int | None
    api_limit: int | None
    error: str | None
    warnings: list[str]


@dataclass
class Freshness:
    """CRM change -> GA4 sent, over the sent events of the period, in seconds."""

    events: int = 0
    last_sent_at: datetime | None = None
    last_lag_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None


@dataclass
class StageMatch:
    """Client-id match rate of one stage: `usable / (usable + missing + bad)`."""

    stage: str
    usable: int
    missing: int
    bad: int

    @property
    def total(self) -> int:
        return self.usable + self.missing + self.bad

    @property
    def rate(self) -> float | None:
        return self.usable / self.total if self.total else None


@dataclass
class ConnectorStatus:
    name: str
    type: str
    last_run: RunSummary | None = None
    last_ok_at: datetime | None = None
    queue: dict[str, int] = field(default_factory=dict)
    freshness: Freshness = field(default_factory=Freshness)
    windows: dict[str, int] = field(default_factory=dict)
    session_joinable: int = 0
    """Sent within 24 h with a session id: could join the web session."""
    match: list[StageMatch] = field(default_factory=list)

    @property
    def match_rate(self) -> float | None:
        usable = sum(m.usable for m in self.match)
        total = sum(m.total for m in self.match)
        return usable / total if total else None


@dataclass
class StatusReport:
    generated_at: datetime
    since: datetime
    connectors: list[ConnectorStatus]

    def to_json(self) -> dict[str, Any]:
        """The `--format json` shape: plain JSON types, times as ISO 8601 UTC."""
        out = _plain(asdict(self))
        for conn, status in zip(out["connectors"], self.connectors, strict=True):
            conn["match_rate"] = status.match_rate
            for row, m in zip(conn["match"], status.match, strict=True):
                row["total"], row["rate"] = m.total, m.rate
        return dict(out)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of already sorted values; None if empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


@dataclass(frozen=True)
class SentRow:
    connector: str
    event_name: str | None
    changed_at: datetime
    sent_at: datetime
    has_session: bool

    @property
    def lag_s(self) -> float:
        return max(0.0, (self.sent_at - self.changed_at).total_seconds())

    @property
    def window(self) -> Ga4Window:
        return classify_window(self.changed_at, self.sent_at)


def sent_rows(store: StateStore, start: datetime, end: datetime | None = None) -> Iterator[SentRow]:
    """Sent outbox rows whose GA4 answer came in [start, end), streamed (no full list)."""
    o = s.outbox
    has_session = o.c.payload.like('%"session_id"%')
    q = sa.select(o.c.connector, o.c.event_name, o.c.changed_at, o.c.sent_at, has_session).where(
        o.c.status == Status.SENT.value, o.c.sent_at.is_not(None), o.c.sent_at >= start
    )
    if end is not None:
        q = q.where(o.c.sent_at < end)
    with store.engine.connect() as conn:
        for r in conn.execution_options(yield_per=2000).execute(q):
            yield SentRow(r[0], r[1], ensure_utc(r[2]), ensure_utc(r[3]), bool(r[4]))


def client_id_match(
    store: StateStore, start: datetime, end: datetime | None = None
) -> dict[str, list[StageMatch]]:
    """Per connector and stage, transitions captured in [start, end) with/without a client id."""
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
    out: dict[str, list[StageMatch]] = defaultdict(list)
    with store.engine.connect() as conn:
        for name, stage, total, miss, wrong in conn.execute(q):
            miss, wrong = int(miss or 0), int(wrong or 0)
            out[name].append(StageMatch(str(stage), int(total) - miss - wrong, miss, wrong))
    return out


def _queue(store: StateStore) -> dict[str, dict[str, int]]:
    o = s.outbox
    q = sa.select(o.c.connector, o.c.status, sa.func.count()).group_by(o.c.connector, o.c.status)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    with store.engine.connect() as conn:
        for name, status, count in conn.execute(q):
            out[name][str(status)] = int(count)
    return out


def _runs(store: StateStore, name: str) -> tuple[RunSummary | None, datetime | None]:
    r = s.runs
    with store.engine.connect() as conn:
        last = conn.execute(
            sa.select(r).where(r.c.connector == name).order_by(r.c.id.desc()).limit(1)
        ).first()
        ok = conn.execute(
            sa.select(sa.func.max(r.c.finished_at)).where(r.c.connector == name, r.c.status == "ok")
        ).scalar()
    summary = None
    if last is not None:
        m = last._mapping
        summary = RunSummary(
            kind=m["kind"],
            started_at=ensure_utc(m["started_at"]),
            finished_at=ensure_utc(m["finished_at"]) if m["finished_at"] else None,
            result=m["status"],
            captured=int(m["captured"] or 0),
            rejected=int(m["rejected"] or 0),
            api_calls=int(m["api_calls"] or 0),
            api_used=m["api_used"],
            api_limit=m["api_limit"],
            error=redact(m["error"]) if m["error"] else None,
            warnings=[redact(w) for w in (m["warnings"] or "").split("\n") if w.strip()],
        )
    return summary, ensure_utc(ok) if ok else None


def build_status(
    config: Config, store: StateStore, now: datetime, period: timedelta = timedelta(days=7)
) -> StatusReport:
    """Everything `ga4sync status` prints, for every configured connector (and any the state
    store still has rows for)."""
    since = now - period
    queue = _queue(store)
    match = client_id_match(store, since)
    names: dict[str, str] = {c.name: c.type for c in config.connectors}
    for extra in sorted(set(queue) | set(match)):
        names.setdefault(extra, "(not in config)")
    lags: dict[str, list[float]] = defaultdict(list)
    windows: dict[str, Counter[str]] = defaultdict(Counter)
    joinable: Counter[str] = Counter()
    last: dict[str, SentRow] = {}
    for row in sent_rows(store, since):
        lags[row.connector].append(row.lag_s)
        window = row.window
        windows[row.connector][window.value] += 1
        if window is Ga4Window.WITHIN_24H and row.has_session:
            joinable[row.connector] += 1
        if row.connector not in last or row.sent_at > last[row.connector].sent_at:
            last[row.connector] = row
    connectors = []
    for name, kind in names.items():
        run, ok_at = _runs(store, name)
        values = sorted(lags.get(name, []))
        latest = last.get(name)
        fresh = Freshness(
            events=len(values),
            last_sent_at=latest.sent_at if latest else None,
            last_lag_s=latest.lag_s if latest else None,
            p50_s=percentile(values, 50),
            p90_s=percentile(values, 90),
            p99_s=percentile(values, 99),
        )
        connectors.append(
            ConnectorStatus(
                name=name,
                type=kind,
                last_run=run,
                last_ok_at=ok_at,
                queue={st.value: queue.get(name, {}).get(st.value, 0) for st in QUEUE_STATES},
                freshness=fresh,
                windows={w.value: windows[name][w.value] for w in WINDOW_ORDER},
                session_joinable=joinable[name],
                match=match.get(name, []),
            )
        )
    return StatusReport(generated_at=now, since=since, connectors=connectors)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return ensure_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
