"""One pass of capture + delivery (DESIGN.md "Data flow"). The engine owns loop, state, locks."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ga4sync.connectors.registry import AnyConnectorSettings
from ga4sync.core.clock import Clock, SystemClock
from ga4sync.core.errors import ConfigError, Ga4SyncError, MappingError, QuotaExhausted
from ga4sync.core.model import Status, TimeWindow
from ga4sync.core.secrets import redact
from ga4sync.mapping.load import LoadedMapping, load_mapping
from ga4sync.pipeline.capture_feed import CaptureFeed
from ga4sync.pipeline.concurrency import ConcurrencyLimit
from ga4sync.pipeline.config import Config
from ga4sync.pipeline.delivery import Delivery, DeliveryReport, DeliverySettings, OutcomeHook
from ga4sync.pipeline.ga4_client import Ga4Client
from ga4sync.pipeline.plan import CapturePlan, StateLookups
from ga4sync.pipeline.remote_check import RemoteCheckMemo
from ga4sync.state.errors import DatabaseError, describe
from ga4sync.state.locks import CaptureLock
from ga4sync.state.store import StateStore

log = logging.getLogger(__name__)

CLOCK_SKEW = timedelta(seconds=2)
LOCK_TTL = timedelta(minutes=15)


@dataclass
class CaptureReport:
    connector: str
    status: str = "ok"
    captured: int = 0
    duplicates: int = 0
    pending: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    rejected: int = 0
    api_calls: int = 0
    api_remaining: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    """Problems that did not stop the run (a broken mapping edit, snapshot mode, ...)."""
    watermark: datetime | None = None


PageHook = Callable[[CaptureReport], None]
"""Called after each committed capture page, with the report so far."""
CaptureHook = Callable[[CaptureReport], None]
"""Called once a capture is over (a daemon's metrics), while delivery may still go on."""


@dataclass(frozen=True)
class CaptureTarget:
    """One capture of a pipelined pass: a connector, into a scope, over a window."""

    connector: str
    scope: str = "daemon"
    window: TimeWindow | None = None
    """None: from the scope's watermark (less the overlap) to now."""
    kind: str = "run"
    """What the runs table records: `run` or `backfill`."""


@dataclass
class RunReport:
    captures: list[CaptureReport] = field(default_factory=list)
    delivery: DeliveryReport = field(default_factory=DeliveryReport)

    @property
    def ok(self) -> bool:
        return all(c.status in ("ok", "locked", "stopped") for c in self.captures)


class MappingCache:
    """An edited mapping takes effect on the next run; a broken edit keeps the last good one."""

    def __init__(self) -> None:
        self.good: dict[str, LoadedMapping] = {}
        self.errors: dict[str, list[str]] = {}

    def get(self, connector: str, path: str) -> LoadedMapping:
        try:
            loaded = load_mapping(path)
        except MappingError as exc:
            self.errors[connector] = exc.problems
            if connector in self.good:
                log.error(
                    "mapping for %s is broken; keeping the last good version (%s):\n%s",
                    connector,
                    self.good[connector].content_hash,
                    "\n".join(exc.problems),
                )
                return self.good[connector]
            raise
        self.errors.pop(connector, None)
        self.good[connector] = loaded
        return loaded


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Engine:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        *,
        clock: Clock | None = None,
        client: Ga4Client | None = None,
        delivery_settings: DeliverySettings | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock or SystemClock()
        self.opened_at = self.clock.now()
        """Rows captured since were validated by this process's rules (Delivery's shortcut)."""
        self.owner = process_owner()
        self.mappings = MappingCache()
        self._client = client
        self.delivery_settings = delivery_settings or DeliverySettings(
            workers=config.ga4.workers,
            min_workers=config.ga4.min_workers,
            max_workers=config.ga4.max_workers,
            max_attempts=config.ga4.max_attempts,
            lease=config.ga4.lease,
            old_events=config.old_events,
            validate_remote=config.ga4.validate_remote,
        )
        self.remote_memo = RemoteCheckMemo()
        settings = self.delivery_settings
        self.concurrency = ConcurrencyLimit(
            initial=settings.workers,
            minimum=min(settings.min_workers, settings.workers),
            maximum=max(settings.max_workers or 0, settings.workers),
        )
        """Requests to GA4 at once: learnt by each delivery, kept for the next (daemon ticks)."""
        """(mapping version, rule) pairs GA4's validation server accepted, for this process."""
        self.stop_event = threading.Event()
        """Set by SIGTERM/Ctrl-C: capture stops after the page it is committing, delivery
        after the batches in flight; what is done is committed and the next run resumes."""

    @property
    def client(self) -> Ga4Client:
        if self._client is None:
            ga4 = self.config.ga4
            secret = ga4.api_secret.resolve(self.config.base_dir).get_secret_value()
            ca = str(self.config.resolve(ga4.ca_file)) if ga4.ca_file else None
            self._client = Ga4Client(
                endpoint=ga4.endpoint,
                measurement_id=ga4.measurement_id,
                api_secret=secret,
                connect_timeout=ga4.connect_timeout.total_seconds(),
                read_timeout=ga4.read_timeout.total_seconds(),
                pool_size=self.concurrency.maximum or ga4.workers,
                ca_file=ca,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- capture ---------------------------------------------------------------------------
    def capture(
        self,
        name: str,
        *,
        scope: str = "daemon",
        window: TimeWindow | None = None,
        kind: str = "run",
        on_page: PageHook | None = None,
    ) -> CaptureReport:
        """Capture one connector's transitions into the outbox, page by committed page.

        `on_page` is called after each committed page (a backfill's progress bar).
        """
        settings = self.config.connector(name)
        report = CaptureReport(connector=name)
        lock = self.store.capture_lock(f"capture:{name}:{scope}", self.owner, LOCK_TTL)
        if not lock.acquire(self.clock.now()):
            report.status = "locked"
            report.error = "another ga4sync process is capturing this connector; skipped"
            return report
        run_id = self.store.start_run(name, kind, self.clock.now())
        plan: CapturePlan | None = None
        try:
            mapping = self.mappings.get(name, str(self.config.resolve(settings.mapping)))
            if name in self.mappings.errors:
                report.warnings.append(
                    "mapping file is broken; using the last good version "
                    f"({mapping.content_hash}):\n" + "\n".join(self.mappings.errors[name])
                )
            object_type = mapping.model.object
            lookups = StateLookups(
                snapshots=lambda ids: self.store.get_snapshots(name, object_type, ids),
                known_keys=self.store.known_keys,
            )
            plan = CapturePlan.open(
                settings, mapping, base_dir=self.config.base_dir, lookups=lookups
            )
            self._capture_pages(plan, settings, report, scope, window, lock, on_page)
        except QuotaExhausted as exc:
            report.status, report.error = "quota", redact(str(exc))
        except (Ga4SyncError, ConfigError) as exc:
            report.status, report.error = "failed", redact(str(exc))
        except DatabaseError as exc:
            # The state store failed past its own reconnect retries (PostgreSQL restarting,
            # a lock held too long): what was committed stays, the next run resumes; one line.
            report.status, report.error = "failed", redact(str(describe(exc, None)))
        except Exception as exc:  # noqa: BLE001 - one connector must not stop the others
            log.exception("capture of %s failed", name)
            report.status, report.error = "failed", redact(f"{type(exc).__name__}: {exc}")
        finally:
            usage = plan.usage if plan is not None else None
            if plan is not None:
                report.warnings.extend(plan.warnings)
                report.api_calls = plan.usage.calls
                report.api_remaining = plan.usage.remaining
                plan.close()
            try:
                self.store.finish_run(
                    run_id,
                    self.clock.now(),
                    status=report.status,
                    captured=report.captured,
                    rejected=report.rejected,
                    api_calls=report.api_calls,
                    api_used=usage.used if usage is not None else None,
                    api_limit=usage.limit if usage is not None else None,
                    error=report.error,
                    warnings=report.warnings,
                )
            finally:
                lock.release()  # even when the database went away under us
        if report.error:
            log.error("connector %s: %s", name, report.error, extra={"connector": name})
        return report

    def _capture_pages(
        self,
        plan: CapturePlan,
        settings: AnyConnectorSettings,
        report: CaptureReport,
        scope: str,
        window: TimeWindow | None,
        lock: CaptureLock,
        on_page: PageHook | None,
    ) -> None:
        started = self.clock.now()
        name = settings.name
        object_type = plan.source.model.object
        mark = self.store.get_watermark(name, object_type, scope)
        # A poll after a finished first sync finds new moves, so their delivery delay counts;
        # a first sync (or its resumption) and a backfill read old history.
        live = window is None and scope == "daemon" and self.store.had_ok_capture(name)
        if window is None:
            start = (mark or started - settings.initial_lookback) - settings.overlap
            window = TimeWindow(start=start)
        elif mark is not None and mark - settings.overlap > window.start:
            window = TimeWindow(start=mark - settings.overlap, end=window.end)
        cap = (window.end or started) - CLOCK_SKEW
        planned_pages = plan.pages(
            window, now=self.clock.now, scope=scope, old_events=self.config.old_events
        )
        for planned in planned_pages:
            page = planned.page
            rows = planned.rows + planned.rejected
            watermark = min(page.watermark, cap) if page.watermark else None
            result = self.store.capture(
                connector=name,
                object_type=object_type,
                rows=rows,
                watermark=watermark,
                now=planned.at,
                scope=scope,
                snapshots=page.snapshots or None,
                live=live,
            )
            report.captured += result.inserted
            report.duplicates += result.duplicates + page.already_captured
            report.rejected += len(page.rejected)
            counted: set[str] = set()  # a key twice in a page (a repeated CSV row) is one row
            for row in rows:
                if row.key not in result.inserted_keys or row.key in counted:
                    continue
                counted.add(row.key)
                if row.key in result.once_skipped_keys:
                    report.skipped["once_per_record"] += 1
                elif row.status == Status.SKIPPED:
                    report.skipped[(row.reason or "").split(":", 1)[0]] += 1
                elif row.status == Status.INVALID:
                    report.invalid += 1
                else:
                    report.pending += 1
            report.watermark = watermark or report.watermark
            lock.renew(self.clock.now())  # raises LockLost: stop after this committed page
            if on_page is not None:
                on_page(report)
            if self.stop_event.is_set():
                report.status = "stopped"
                log.info("capture of %s stopped after a committed page", name)
                return

    # -- delivery --------------------------------------------------------------------------
    def deliver(
        self,
        *,
        scope: str | None = None,
        connector: str | None = None,
        max_rounds: int | None = None,
        on_outcome: OutcomeHook | None = None,
        feed: CaptureFeed | None = None,
    ) -> DeliveryReport:
        """Deliver due rows; `on_outcome` is called for each row GA4 answered for (metrics,
        a backfill's progress); with `feed`, also each page a running capture commits."""
        delivery = Delivery(
            self.store,
            self.client,
            self.clock,
            self.delivery_settings,
            remote_memo=self.remote_memo,
            on_outcome=on_outcome,
            concurrency=self.concurrency,
            validated_since=self.opened_at,
        )
        return delivery.run(
            scope=scope,
            connector=connector,
            stop=self.stop_event,
            max_rounds=max_rounds,
            feed=feed,
        )

    def run_once(
        self,
        names: list[str] | None = None,
        *,
        on_page: PageHook | None = None,
        on_outcome: OutcomeHook | None = None,
        on_deliver: Callable[[], None] | None = None,
    ) -> RunReport:
        """Capture each enabled connector (or `names`) and deliver everything due, side by
        side (`capture_and_deliver`). `on_deliver` is called when delivery starts."""
        targets = names or [c.name for c in self.config.connectors if c.enabled]
        return self.capture_and_deliver(
            [CaptureTarget(name) for name in targets],
            on_page=on_page,
            on_outcome=on_outcome,
            on_deliver=on_deliver,
        )

    def capture_and_deliver(
        self,
        targets: list[CaptureTarget],
        *,
        deliver_scope: str | None = None,
        deliver_connector: str | None = None,
        slice_rounds: int | None = None,
        deliver_if_locked: bool = True,
        on_page: PageHook | None = None,
        on_capture: CaptureHook | None = None,
        on_outcome: OutcomeHook | None = None,
        on_deliver: Callable[[], None] | None = None,
    ) -> RunReport:
        """One pipelined pass, shared by `run`, each daemon tick and `backfill`: capture the
        targets one after the other while a sender thread delivers the due rows of
        `deliver_scope`/`deliver_connector` (None: every scope or connector) beside it.

        A committed page is deliverable, so a large first sync or backfill does not wait for
        its whole capture before the first event goes. What is sent is still decided by
        claiming from the outbox (a row is claimed once, under its lease), so sending early
        changes no promise. The rules are those of a capture and of a delivery on their own:
        a stop (SIGTERM) ends capture after the page it is committing and delivery after the
        requests in flight are settled; a capture that fails leaves what it committed to be
        delivered; a state store that fails in delivery raises here once capture is done.

        `slice_rounds`: deliver in slices of that many claims, so a pass of 200,000 rows does
        not keep every sent key in memory (a backfill); the report then carries counts only.
        `deliver_if_locked=False`: when another process holds the capture lock, leave the
        delivery to it; delivery then starts on the first committed page (or once the capture
        ended without finding the lock taken) instead of at once.
        Hooks: `on_page` after each committed page, `on_capture` after each target's capture,
        `on_deliver` when delivery starts, `on_outcome` for each row GA4 answered for.
        """
        report = RunReport()
        feed = CaptureFeed()
        sender = _Sender(
            lambda: self._deliver_beside(
                feed, deliver_scope, deliver_connector, slice_rounds, on_outcome
            )
        )

        def start_delivery() -> None:
            if sender.ident is None:
                if on_deliver is not None:
                    on_deliver()
                sender.start()

        def page_committed(capture: CaptureReport) -> None:
            feed.page_committed()
            start_delivery()
            if on_page is not None:
                on_page(capture)

        if deliver_if_locked:
            start_delivery()
        aborted = False
        try:
            for target in targets:
                if self.stop_event.is_set():
                    break  # stopping: the next run captures the connectors not reached
                capture = self.capture(
                    target.connector,
                    scope=target.scope,
                    window=target.window,
                    kind=target.kind,
                    on_page=page_committed,
                )
                report.captures.append(capture)
                if on_capture is not None:
                    on_capture(capture)
                if capture.status != "locked" and not self.stop_event.is_set():
                    start_delivery()  # nothing committed this pass, rows of earlier ones due
        except KeyboardInterrupt:
            # A second Ctrl-C/SIGTERM aborts at once: the sender is a daemon thread and ends
            # with the process (its requests in flight turn `unknown`, as documented).
            aborted = True
            raise
        finally:
            feed.finish()
            if sender.ident is not None and not aborted:
                report.delivery = sender.result()
        return report

    def _deliver_beside(
        self,
        feed: CaptureFeed,
        scope: str | None,
        connector: str | None,
        slice_rounds: int | None,
        on_outcome: OutcomeHook | None,
    ) -> DeliveryReport:
        """The sender thread's work: deliver until the capture is over and nothing is due."""

        def deliver(max_rounds: int | None) -> DeliveryReport:
            return self.deliver(
                scope=scope,
                connector=connector,
                max_rounds=max_rounds,
                on_outcome=on_outcome,
                feed=feed,
            )

        if slice_rounds is None:
            return deliver(None)
        total = DeliveryReport()
        while not self.stop_event.is_set():
            finished = feed.state().finished
            part = deliver(slice_rounds)
            part.sent_keys.clear()
            part.latencies.clear()  # counts only: memory stays flat over a long pass
            total.add(part)
            settled = part.sent + part.retry + part.unknown + part.dead
            if settled + part.invalid + part.skipped == 0 and finished:
                break  # the capture was over before this slice, and it found nothing due
        return total


class _Sender(threading.Thread):
    """Delivery on its own thread; its report, or its error raised in the caller's thread."""

    def __init__(self, deliver: Callable[[], DeliveryReport]) -> None:
        super().__init__(name="ga4sync-deliver", daemon=True)
        self._deliver = deliver
        self._report: DeliveryReport | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._report = self._deliver()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
            self._error = exc

    def result(self) -> DeliveryReport:
        self.join()
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report
