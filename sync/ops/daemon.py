"""`ga4sync daemon`: every connector on its own schedule, forever, and a clean stop on SIGTERM.

APScheduler 3 only decides *when* a run starts (STYLE.md #11). Jobs are built from the config
at start in a MemoryJobStore, with `max_instances=1` (never two runs of one connector in this
process) and `coalesce=True` (a backlog of missed ticks is one run). Correctness lives in the
state store: each run reads its window from the watermark, so a missed tick only makes the
next window wider, and replicas coordinate through the capture lock and SKIP LOCKED claims.

A stop (SIGTERM/SIGINT) sets the engine's stop event: capture stops after the page it is
committing, delivery after the requests already in flight are settled; then the process
exits 0 and the next start resumes from the committed watermark.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from ga4sync.connectors.base import ConnectorSettings
from ga4sync.core.clock import Clock, SystemClock
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status
from ga4sync.core.secrets import redact
from ga4sync.ops.healthz import HealthReport, ScheduledConnector, StatusServer, check_health
from ga4sync.ops.metrics import DaemonMetrics
from ga4sync.pipeline.config import Config
from ga4sync.pipeline.engine import CaptureTarget, Engine
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.store import ClaimedRow, StateStore

log = logging.getLogger(__name__)

DEFAULT_EVERY = timedelta(minutes=5)
CRON_GAPS_CHECKED = 60
"""Fire times looked at to find a cron schedule's longest gap (covers weekday-only crons)."""


@dataclass(frozen=True)
class ConnectorSchedule:
    """When one connector runs: its APScheduler trigger and the longest gap between runs."""

    name: str
    trigger: BaseTrigger
    interval: timedelta
    description: str


def schedule_for(settings: ConnectorSettings, *, now: datetime | None = None) -> ConnectorSchedule:
    """`every` or `cron` (neither means every 5m). Cron times are UTC.

    ConnectorSettings has already refused both at once, a zero interval and a bad crontab,
    naming the config file's line, so a schedule that gets here is valid.
    """
    name = settings.name
    if settings.cron is not None:
        try:
            trigger = CronTrigger.from_crontab(settings.cron, timezone=UTC)
        except ValueError as exc:
            raise ConfigError(
                f"connector `{name}`: cron `{settings.cron}` is not a 5-field crontab "
                f"(minute hour day-of-month month day-of-week, e.g. `*/15 * * * *`): {exc}"
            ) from None
        interval = _longest_gap(trigger, now or datetime.now(UTC))
        return ConnectorSchedule(name, trigger, interval, f"cron `{settings.cron}` (UTC)")
    every = settings.every if settings.every is not None else DEFAULT_EVERY
    trigger = IntervalTrigger(seconds=every.total_seconds(), timezone=UTC)
    return ConnectorSchedule(name, trigger, every, f"every {every.total_seconds():g}s")


def _longest_gap(trigger: BaseTrigger, now: datetime) -> timedelta:
    fires: list[datetime] = []
    previous: datetime | None = None
    at = now
    for _ in range(CRON_GAPS_CHECKED):
        nxt = trigger.get_next_fire_time(previous, at)
        if nxt is None:
            break
        fires.append(nxt)
        previous, at = nxt, nxt + timedelta(seconds=1)
    gaps = [b - a for a, b in zip(fires, fires[1:], strict=False)]
    return max(gaps, default=timedelta(days=1))


class Daemon:
    """Runs capture and delivery side by side per connector on its schedule until stopped."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        *,
        clock: Clock | None = None,
        metrics: DaemonMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock or SystemClock()
        self.schedules = [schedule_for(c) for c in config.connectors if c.enabled]
        if not self.schedules:
            raise ConfigError(f"{config.path}: no enabled connectors; nothing to schedule")
        self.metrics = metrics or DaemonMetrics()
        self.engine = Engine(config, store, clock=self.clock)
        self.metrics.record_concurrency(self.engine.concurrency.limit)
        self.started_at = self.clock.now()
        self._signals = 0

    @property
    def stop_event(self) -> threading.Event:
        return self.engine.stop_event

    # -- one scheduled run ---------------------------------------------------------------------
    def run_connector(self, name: str) -> None:
        """Capture this connector and deliver its due rows (new ones and retries), side by
        side: the engine's pipelined pass, as `ga4sync run` does, scoped to this connector.

        Never raises: a connector that fails is logged loudly, counted and recorded in the
        runs table, and the other connectors (and its own next run) go on.
        """
        if self.stop_event.is_set():
            return
        extra = {"connector": name}
        try:
            report = self.engine.capture_and_deliver(
                [CaptureTarget(name)],
                deliver_scope="daemon",
                deliver_connector=name,
                on_capture=lambda c: self.metrics.record_capture(c, finished_at=self.clock.now()),
                on_outcome=self._record_outcome,
            )
            delivery = report.delivery
            self.metrics.record_delivery(delivery)
        except Exception as exc:  # noqa: BLE001 - one connector must never stop the daemon
            message = redact(f"{type(exc).__name__}: {exc}")
            log.exception("run of %s failed: %s", name, message, extra=extra)
            self.metrics.run_errors.labels(name).inc()
            self._record_failure(name, message)
            return
        if not report.captures:
            return  # stopped before the capture began
        capture = report.captures[0]
        if self.stop_event.is_set():
            log.info("%s: stopped; the rest is delivered on restart", name, extra=extra)
        level = logging.INFO if capture.status in ("ok", "locked", "stopped") else logging.ERROR
        log.log(
            level,
            "%s: %s; captured %d new (%d to send, %d skipped, %d invalid); GA4 sent %d, "
            "retry %d, unknown %d, dead %d, invalid %d, skipped %d; %d CRM calls",
            name,
            capture.status if not capture.error else f"{capture.status}: {capture.error}",
            capture.captured,
            capture.pending,
            sum(capture.skipped.values()),
            capture.invalid,  # a malformed record is one invalid row: counted once
            delivery.sent,
            delivery.retry,
            delivery.unknown,
            delivery.dead,
            delivery.invalid,
            delivery.skipped,
            capture.api_calls,
            extra=extra,
        )

    def _record_outcome(self, row: ClaimedRow, status: Status, outcome: SendOutcome | None) -> None:
        """Delivery's hook: each row GA4 answered for becomes metrics, timed by our clock."""
        self.metrics.record_outcome(row, status, outcome, self.clock.now())

    def _record_failure(self, name: str, message: str) -> None:
        try:
            now = self.clock.now()
            run_id = self.store.start_run(name, "run", now)
            self.store.finish_run(
                run_id,
                now,
                status="failed",
                captured=0,
                rejected=0,
                api_calls=0,
                api_used=None,
                api_limit=None,
                error=message,
            )
        except Exception as exc:  # noqa: BLE001 - the state store itself may be what failed
            log.error(
                "could not record the failed run of %s: %s",
                name,
                redact(f"{type(exc).__name__}: {exc}"),
                extra={"connector": name},
            )

    # -- health ------------------------------------------------------------------------------
    def health(self) -> HealthReport:
        return check_health(
            self.store,
            [ScheduledConnector(s.name, s.interval) for s in self.schedules],
            now=self.clock.now(),
            started_at=self.started_at,
        )

    # -- the process -------------------------------------------------------------------------
    def build_scheduler(self) -> BackgroundScheduler:
        # APScheduler logs every tick at INFO; our own lines (with the connector) say more.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=len(self.schedules))},
            timezone=UTC,
        )
        for s in self.schedules:
            scheduler.add_job(
                self.run_connector,
                trigger=s.trigger,
                args=[s.name],
                id=s.name,
                name=f"ga4sync {s.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(s.interval.total_seconds())),
                next_run_time=datetime.now(UTC),
            )
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        return scheduler

    def _on_job_event(self, event: JobEvent) -> None:
        extra = {"connector": event.job_id}
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("%s: previous run still going; this tick skipped", event.job_id, extra=extra)
        elif event.code == EVENT_JOB_MISSED:
            log.warning(
                "%s: run missed its time; the next one covers it", event.job_id, extra=extra
            )
        else:
            log.error("%s: scheduled job raised", event.job_id, extra=extra)

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning(
                "%s: finishing the step in flight, committing, then exiting",
                signal.Signals(signum).name,
            )
        self.stop_event.set()

    def serve(self, *, http_host: str = "0.0.0.0", http_port: int | None = None) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (0 after a clean stop)."""
        _ = self.engine.client  # resolve the GA4 secret now: a missing one fails at start
        server: StatusServer | None = None
        if http_port is not None:
            try:
                server = StatusServer(
                    host=http_host, port=http_port, health=self.health, metrics=self.metrics.render
                ).start()
            except OSError as exc:
                raise ConfigError(
                    f"--http-port {http_port}: cannot listen on {http_host}:{http_port} "
                    f"({exc.strerror or exc}); pick a free port or stop what is using it"
                ) from None
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self.request_stop)
        scheduler = self.build_scheduler()
        scheduler.start()
        for s in self.schedules:
            log.info("%s: scheduled %s", s.name, s.description, extra={"connector": s.name})
        if server is not None:
            log.info("serving /healthz and /metrics on %s:%d", http_host, server.port)
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.stop_event.set()
            scheduler.shutdown(wait=True)
            if server is not None:
                server.stop()
            self.engine.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.warning("stopped cleanly; every finished step is committed")
        return 0
