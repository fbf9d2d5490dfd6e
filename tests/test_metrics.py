"""Schedules, GA4 window classes, Prometheus metrics and `/healthz` over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from ga4sync.connectors.base import ConnectorSettings
from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Status
from ga4sync.ga4.windows import classify_window
from ga4sync.ops.daemon import DEFAULT_EVERY, schedule_for
from ga4sync.ops.healthz import ScheduledConnector, StatusServer, check_health
from ga4sync.ops.metrics import DaemonMetrics
from ga4sync.pipeline.delivery import Delivery, DeliverySettings
from ga4sync.pipeline.engine import CaptureReport
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.sandbox.ga4 import Faults
from ga4sync.state.store import ClaimedRow, StateStore
from pydantic import ValidationError

from tests.test_delivery import (
    Ga4Server,
    StoreOutage,
    capture,
    clock,
    ga4_server,
    make_client,
    outage,
    outage_at_first_answer,
    row,
)

__all__ = ["clock", "ga4_server", "outage"]  # fixtures shared with test_delivery

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def settings(**kw: object) -> ConnectorSettings:
    return ConnectorSettings.model_validate({"name": "sf", "type": "x", "mapping": "m.yaml", **kw})


def test_schedule_is_every_or_cron_and_defaults_to_five_minutes() -> None:
    assert schedule_for(settings()).interval == DEFAULT_EVERY
    assert schedule_for(settings(every="90s")).interval == timedelta(seconds=90)
    assert schedule_for(settings(cron="*/15 * * * *"), now=NOW).interval == timedelta(minutes=15)
    weekdays = schedule_for(settings(cron="0 9 * * mon-fri"), now=NOW)
    assert weekdays.interval == timedelta(days=3)  # Friday 09:00 -> Monday 09:00
    # A bad schedule is refused when the config loads (with its line), before the daemon.
    with pytest.raises(ValidationError, match="either `every`.*or `cron`"):
        settings(every="5m", cron="* * * * *")
    with pytest.raises(ValidationError, match="not a 5-field crontab"):
        settings(cron="every monday")
    with pytest.raises(ValidationError, match="longer than 0s"):
        settings(every="0s")


def test_window_classes_follow_ga4s_24h_and_72h_limits() -> None:
    assert classify_window(NOW - timedelta(hours=23), NOW) == "within_24h"
    assert classify_window(NOW - timedelta(hours=25), NOW) == "within_72h"
    assert classify_window(NOW - timedelta(hours=80), NOW) == "too_old"


def _row(event: str, changed_at: datetime) -> ClaimedRow:
    return ClaimedRow(
        key="k",
        connector="sf",
        event_name=event,
        payload={},
        group_key="g",
        changed_at=changed_at,
        attempts=1,
        resend_if_unknown=False,
        claim_token="t",
    )


def _value(text: str, prefix: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_outcomes_windows_freshness_and_captures() -> None:
    m = DaemonMetrics()
    ok = SendOutcome("sent", "204", http_status=204, latency_s=0.02)
    m.record_outcome(_row("purchase", NOW - timedelta(minutes=10)), Status.SENT, ok, NOW)
    m.record_outcome(_row("purchase", NOW - timedelta(hours=30)), Status.SENT, ok, NOW)
    m.record_outcome(_row("purchase", NOW), Status.RETRY, ok, NOW)
    m.record_outcome(_row("purchase", NOW), Status.UNKNOWN, None, NOW)
    report = CaptureReport("sf", captured=7, api_calls=3)
    report.skipped["no_client_id"] = 2
    m.record_capture(report, finished_at=NOW)
    text = m.render().decode()
    events = 'ga4sync_events_total{connector="sf",event="purchase",outcome='
    assert _value(text, events + '"sent"}') == 2
    assert _value(text, events + '"failed"}') == 1
    assert _value(text, events + '"unknown"}') == 1
    assert _value(text, 'ga4sync_events_by_window_total{connector="sf",window="within_24h"}') == 1
    assert _value(text, 'ga4sync_events_by_window_total{connector="sf",window="within_72h"}') == 1
    assert _value(text, 'ga4sync_freshness_seconds_bucket{connector="sf",le="900.0"}') == 1
    assert _value(text, 'ga4sync_freshness_seconds_count{connector="sf"}') == 2
    assert _value(text, 'ga4sync_transitions_captured_total{connector="sf"}') == 7
    assert _value(text, 'ga4sync_crm_api_calls_total{connector="sf"}') == 3
    assert (
        _value(text, 'ga4sync_transitions_skipped_total{connector="sf",reason="no_client_id"}') == 2
    )
    assert _value(text, 'ga4sync_last_success_timestamp_seconds{connector="sf"}') == NOW.timestamp()


def _run(store: StateStore, connector: str, finished: datetime, status: str = "ok") -> None:
    run_id = store.start_run(connector, "run", finished - timedelta(seconds=5))
    store.finish_run(
        run_id,
        finished,
        status=status,
        captured=0,
        rejected=0,
        api_calls=0,
        api_used=None,
        api_limit=None,
    )


def test_healthz_over_http_names_connectors_without_a_recent_success(store: StateStore) -> None:
    connectors = [
        ScheduledConnector("fresh", timedelta(minutes=5)),
        ScheduledConnector("stale", timedelta(minutes=5)),
    ]
    started = NOW - timedelta(hours=1)
    _run(store, "fresh", NOW - timedelta(minutes=4))
    _run(store, "stale", NOW - timedelta(minutes=20))  # more than 3 intervals ago
    _run(store, "stale", NOW - timedelta(minutes=1), status="failed")  # failures don't count
    metrics = DaemonMetrics()
    server = StatusServer(
        host="127.0.0.1",
        port=0,
        health=lambda: check_health(store, connectors, now=NOW, started_at=started),
        metrics=metrics.render,
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        resp = requests.get(f"{base}/healthz", timeout=5)
        assert resp.status_code == 503
        assert resp.json()["stale"] == ["stale"]
        assert resp.json()["status"] == "stale"
        _run(store, "stale", NOW - timedelta(minutes=2))
        resp = requests.get(f"{base}/healthz", timeout=5)
        assert resp.status_code == 200 and resp.json()["stale"] == []
        prom = requests.get(f"{base}/metrics", timeout=5)
        assert prom.status_code == 200
        assert prom.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE ga4sync_events_total counter" in prom.text
        assert requests.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_new_daemon_gets_three_intervals_of_grace(store: StateStore) -> None:
    connectors = [ScheduledConnector("new", timedelta(minutes=1))]
    fresh = check_health(store, connectors, now=NOW, started_at=NOW - timedelta(minutes=2))
    assert fresh.ok
    late = check_health(store, connectors, now=NOW, started_at=NOW - timedelta(minutes=4))
    assert late.stale == ["new"]


def test_requests_delivery_did_not_start_are_counted_not_sent_on_the_metrics_endpoint(
    state_url: str, outage: StoreOutage, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """A real delivery where the store stops answering after GA4's first answer: the requests
    still queued are never started (`not_sent`), then go once the store is back. /metrics counts
    them apart from `failed`, and every row reaches GA4 once."""
    store = outage.open_store()
    now = clock.now()
    keys = ["n0", "n1", "n2"]
    capture(store, [row(k, now) for k in keys], now)  # three identities: three requests
    ga4_server.ga4.set_faults(Faults(latency_ms=500))
    metrics = DaemonMetrics()
    start_outage = outage_at_first_answer(outage, hold_s=2.0)

    def on_outcome(r: ClaimedRow, status: Status, outcome: SendOutcome | None) -> None:
        start_outage(r, status, outcome)
        metrics.record_outcome(r, status, outcome, clock.now())

    client = make_client(ga4_server.url)
    d = Delivery(store, client, clock, DeliverySettings(workers=1), on_outcome=on_outcome)
    server = StatusServer(
        host="127.0.0.1", port=0, health=lambda: check_health(store, [], now=now, started_at=now),
        metrics=metrics.render,
    ).start()  # fmt: skip
    try:
        for _ in range(3):
            d.run()
            if set(store.count_by_status()) == {Status.SENT}:
                break
        assert store.count_by_status() == {Status.SENT: 3}
        assert sorted(e["params"]["row_key"] for e in ga4_server.ga4.events()) == keys
        text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        server.stop()
        client.close()
        store.close()
    events = 'ga4sync_events_total{connector="test",event="generate_lead",outcome='
    assert _value(text, events + '"sent"}') == 3
    assert _value(text, events + '"not_sent"}') >= 1  # the third request at least never left
    assert events + '"failed"}' not in text
