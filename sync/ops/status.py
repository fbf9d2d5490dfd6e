"""What `ga4sync status` shows, from the state store's typed readings (read-only).

Per connector: its last run and result (a run whose process was killed shows `died` or
`interrupted`, not `running` forever), the last good run, CRM API usage, the run's error and
warnings, whether the mapping file as it is now is broken (a run keeps the last good
version and still ends `ok`), the queue by status, freshness (CRM change -> GA4
sent), GA4 window classes of sent events, and the client-id match rate per stage.

The **client-id match rate** is the share of transitions that had a usable GA client id, among
those a mapping rule wanted to send: rows skipped with `no_client_id` or `bad_client_id` count
against it, rows with any other outcome count for it (sent, pending, too old, once per record,
a param a rule refused...). Moves no rule maps (`no_rule`) and CRM records the connector could
not read at all are left out: they say nothing about the web form. A rate far below 100% means
the form is not saving the `_ga` cookie into the CRM.

Rates, freshness and windows cover a recent period (`since`, 7 days by default) so that a fix
shows up; queue counts are as they are now.

The **delivery delay** is CRM move -> GA4's 2xx for the moves a live poll captured, over the
last 24 h (whatever `--days` says: it is the daemon's figure now, to hold against the poll
interval). Freshness counts every sent row; the delay leaves out a first sync of old history
and backfills, whose age would swamp it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ga4sync.core.clock import ensure_utc
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.ga4.windows import WINDOW_ORDER, Ga4Window, classify_window
from ga4sync.mapping.load import check_mapping
from ga4sync.pipeline.config import Config
from ga4sync.state.leases import held_rows
from ga4sync.state.readings import RunRecord, SentEvent
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


DELAY_PERIOD = timedelta(hours=24)


@dataclass
class DeliveryDelay:
    """Live CRM move -> GA4's 2xx, over the moves a live poll captured and GA4 accepted in the
    last `period_s` seconds (`ga4sync_delivery_delay_seconds` on `/metrics`)."""

    period_s: float = DELAY_PERIOD.total_seconds()
    events: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None

    @classmethod
    def of(cls, delays: Sequence[float], period: timedelta = DELAY_PERIOD) -> DeliveryDelay:
        values = sorted(delays)
        return cls(
            period_s=period.total_seconds(),
            events=len(values),
            p50_s=percentile(values, 50),
            p95_s=percentile(values, 95),
            max_s=values[-1] if values else None,
        )


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
    delay: DeliveryDelay = field(default_factory=DeliveryDelay)
    windows: dict[str, int] = field(default_factory=dict)
    session_joinable: int = 0
    """Sent within 24 h with a session id: could join the web session."""
    match: list[StageMatch] = field(default_factory=list)
    next_retry_at: datetime | None = None
    """When the earliest `retry` row goes next."""
    lease_ends_at: datetime | None = None
    """When the last `sending` row's lease ends: a killed run's rows come back then (pending
    if their request never left, else unknown)."""
    mapping_problem: str | None = None
    """The first problem of the connector's mapping file as it is now (`file:line:col: ...`),
    when it is broken: runs keep the last good version, so their result alone says `ok`."""

    @property
    def mapping_broken(self) -> bool:
        return self.mapping_problem is not None

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
            conn["mapping_broken"] = status.mapping_broken
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


SILENT_RUN_AFTER = timedelta(minutes=30)
"""A `running` capture commits a page (its heartbeat) at least every capture-lock lease
(15 min); twice that without one means its process is gone, even on another host."""


def run_result(run: RunRecord, now: datetime) -> str:
    """`running`, unless the run's process is provably gone or silent for too long.

    A SIGKILLed run never writes its end, so its row says `running` forever; shown as such,
    a person waits for a run that will never finish.
    """
    if run.status != "running":
        return run.status
    if run.owner is not None and run.owner.is_gone():
        return "died"
    heartbeat = run.heartbeat_at or run.started_at
    if now - heartbeat > SILENT_RUN_AFTER:
        return "interrupted"
    return "running"


def _died_note(run: RunRecord, result: str) -> str | None:
    if result == "died" and run.owner is not None:
        return (
            f"process {run.owner.pid} on {run.owner.host} stopped without finishing this run "
            "(killed?); what it committed is kept, the next run continues from there"
        )
    if result == "interrupted":
        return (
            "no sign of life from this run for over "
            f"{int(SILENT_RUN_AFTER.total_seconds() // 60)} min: its process was most likely "
            "stopped; what it committed is kept, the next run continues from there"
        )
    return None


def _summary(run: RunRecord, now: datetime) -> RunSummary:
    result = run_result(run, now)
    error = redact(run.error) if run.error else _died_note(run, result)
    return RunSummary(
        kind=run.kind,
        started_at=run.started_at,
        finished_at=run.finished_at,
        result=result,
        captured=run.captured,
        rejected=run.rejected,
        api_calls=run.api_calls,
        api_used=run.api_used,
        api_limit=run.api_limit,
        error=error,
        warnings=[redact(w) for w in run.warnings],
    )


def client_id_match(
    store: StateStore, start: datetime, end: datetime | None = None
) -> dict[str, list[StageMatch]]:
    """Per connector and stage, transitions captured in [start, end) with/without a client id."""
    out: dict[str, list[StageMatch]] = defaultdict(list)
    for c in store.client_id_counts(start, end):
        out[c.connector].append(StageMatch(c.stage, c.total - c.missing - c.bad, c.missing, c.bad))
    return out


def mapping_problem(config: Config, name: str) -> str | None:
    """The first problem of a configured connector's mapping file now, or None when it loads.

    Checked here because a broken edit never shows in a run's result: the engine keeps the
    last good mapping and the run still ends `ok`."""
    try:
        settings = config.connector(name)
    except ConfigError:
        return None
    checked = check_mapping(config.resolve(settings.mapping))
    return str(checked.problems[0]) if checked.problems else None


def _queue(store: StateStore) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for q in store.queue_counts():
        out[q.connector][q.status] = q.count
    return out


def build_status(
    config: Config, store: StateStore, now: datetime, period: timedelta = timedelta(days=7)
) -> StatusReport:
    """Everything `ga4sync status` prints, for every configured connector (and any the state
    store still has rows for)."""
    since = now - period
    queue = _queue(store)
    match = client_id_match(store, since)
    retries = store.next_retries()
    leases = {h.connector: h.last_back_at for h in held_rows(store.engine)}
    names: dict[str, str] = {c.name: c.type for c in config.connectors}
    for extra in sorted(set(queue) | set(match)):
        names.setdefault(extra, "(not in config)")
    delays: dict[str, list[float]] = defaultdict(list)
    for d in store.iter_delays(now - DELAY_PERIOD):
        delays[d.connector].append(d.delay_s)
    lags: dict[str, list[float]] = defaultdict(list)
    windows: dict[str, Counter[str]] = defaultdict(Counter)
    joinable: Counter[str] = Counter()
    last: dict[str, SentEvent] = {}
    for row in store.iter_sent(since):
        lags[row.connector].append(row.lag_s)
        window = classify_window(row.changed_at, row.sent_at)
        windows[row.connector][window.value] += 1
        if window is Ga4Window.WITHIN_24H and row.has_session:
            joinable[row.connector] += 1
        if row.connector not in last or row.sent_at > last[row.connector].sent_at:
            last[row.connector] = row
    connectors = []
    for name, kind in names.items():
        record = store.last_run(name)
        run = _summary(record, now) if record is not None else None
        ok_at = store.last_ok_finish(name)
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
                delay=DeliveryDelay.of(delays.get(name, [])),
                windows={w.value: windows[name][w.value] for w in WINDOW_ORDER},
                session_joinable=joinable[name],
                match=match.get(name, []),
                next_retry_at=retries.get(name),
                lease_ends_at=leases.get(name),
                mapping_problem=mapping_problem(config, name),
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
