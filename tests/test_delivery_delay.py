"""The delivery delay (live CRM move -> GA4's 2xx) on both backends, by an injected clock:
the `/metrics` histogram over real HTTP, `status` per connector, and what counts as live.

A first sync of old history and backfills are left out: their delay is the history's age.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Status
from ga4sync.ops.daemon import Daemon
from ga4sync.ops.healthz import StatusServer
from ga4sync.ops.status import DeliveryDelay, build_status
from ga4sync.pipeline.config import Config, load_config
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state import schema
from ga4sync.state.store import OutboxRow, Settlement, StateStore

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _value(text: str, prefix: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def daemon_setup(
    sandbox: SandboxEnvironment, state_url: str
) -> Iterator[tuple[Daemon, Config, ManualClock, SandboxEnvironment]]:
    config = load_config(sandbox.write_config(state_url=state_url))
    # Whole seconds: the Salesforce API gives times to the millisecond.
    sandbox.clock.set(sandbox.clock.now().replace(microsecond=0))
    clock = ManualClock(sandbox.clock.now())
    store = StateStore.open(config.state_url())
    daemon = Daemon(config, store, clock=clock)
    try:
        yield daemon, config, clock, sandbox
    finally:
        daemon.engine.close()
        store.close()


def test_only_moves_a_live_poll_captured_count_in_metrics_and_status(
    daemon_setup: tuple[Daemon, Config, ManualClock, SandboxEnvironment],
) -> None:
    daemon, config, clock, sandbox = daemon_setup
    data = sandbox.salesforce.data
    t0 = clock.now()
    # Old history: the first sync sends it hours late, which is not a delivery delay.
    old = data.create_opportunity(
        t0 - timedelta(hours=3), stage="Prospecting", Amount=10.0, GA_Client_ID__c="100.1"
    )
    data.move_opportunity(old, "Closed Won", t0 - timedelta(hours=2))
    fresh = data.create_opportunity(
        t0 - timedelta(hours=3), stage="Prospecting", Amount=20.0, GA_Client_ID__c="200.2"
    )
    daemon.run_connector("salesforce")  # the first sync
    # A move after it, seen by the next poll 30 s later (the clock stands still meanwhile).
    moved_at = t0 + timedelta(seconds=10)
    sandbox.clock.set(moved_at)
    data.move_opportunity(fresh, "Closed Won", moved_at)
    clock.set(moved_at + timedelta(seconds=30))
    daemon.run_connector("salesforce")
    assert sandbox.ga4.events() and len(sandbox.ga4.events()) == 2

    server = StatusServer(
        host="127.0.0.1", port=0, health=daemon.health, metrics=daemon.metrics.render
    ).start()
    try:
        text = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    finally:
        server.stop()
    delay = 'ga4sync_delivery_delay_seconds_{}{{connector="salesforce"{}}}'
    assert "# TYPE ga4sync_delivery_delay_seconds histogram" in text
    assert _value(text, delay.format("count", "")) == 1
    assert _value(text, delay.format("sum", "")) == 30
    assert _value(text, delay.format("bucket", ',le="15.0"')) == 0
    assert _value(text, delay.format("bucket", ',le="30.0"')) == 1
    # Freshness still counts every sent row, the first sync's included.
    assert _value(text, 'ga4sync_freshness_seconds_count{connector="salesforce"}') == 2

    report = build_status(config, daemon.store, clock.now())
    (sf,) = report.connectors
    assert sf.freshness.events == 2
    assert sf.delay == DeliveryDelay(events=1, p50_s=30.0, p95_s=30.0, max_s=30.0)
    doc = report.to_json()["connectors"][0]
    assert doc["delay"] == {
        "period_s": 86400.0,
        "events": 1,
        "p50_s": 30.0,
        "p95_s": 30.0,
        "max_s": 30.0,
    }
    assert "freshness" in doc and "queue" in doc  # the keys scripts already read stay
    # A day later the window is empty again.
    later = build_status(config, daemon.store, clock.now() + timedelta(hours=25))
    assert later.connectors[0].delay.events == 0


def test_status_table_and_json_show_the_delay(
    daemon_setup: tuple[Daemon, Config, ManualClock, SandboxEnvironment],
) -> None:
    daemon, config, clock, sandbox = daemon_setup
    data = sandbox.salesforce.data
    t0 = clock.now()
    oid = data.create_opportunity(
        t0 - timedelta(hours=3), stage="Prospecting", Amount=20.0, GA_Client_ID__c="300.3"
    )
    daemon.run_connector("salesforce")  # first sync: nothing to send
    data.move_opportunity(oid, "Closed Won", t0 - timedelta(seconds=45))
    daemon.run_connector("salesforce")
    result = CliRunner().invoke(main, ["--config", str(config.path), "status"])
    assert result.exit_code == 0, result.output
    assert "│ salesforce │ 1 │ 45s │ 45s │ 45s │" in " ".join(result.output.split())
    result = CliRunner().invoke(main, ["--config", str(config.path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    delay = json.loads(result.output)["connectors"][0]["delay"]
    assert (delay["events"], delay["p95_s"], delay["max_s"]) == (1, 45.0, 45.0)


# -- the state store -----------------------------------------------------------------------
def _row(key: str, *, changed_at: datetime, scope: str = "daemon") -> OutboxRow:
    return OutboxRow(
        key=key,
        connector="crm",
        object_type="Opportunity",
        record_id=f"006{key}",
        field="StageName",
        from_value="Prospecting",
        to_value="Closed Won",
        changed_at=changed_at,
        detected_by="history",
        status=Status.PENDING,
        event_name="purchase",
        payload={"client_id": "1.2", "events": [{"name": "purchase"}]},
        group_key="1.2",
        scope=scope,
    )


def _capture_and_send(
    store: StateStore, rows: list[OutboxRow], *, live: bool, sent_at: datetime, scope: str
) -> None:
    store.capture(
        connector="crm",
        object_type="Opportunity",
        rows=rows,
        watermark=None,
        now=NOW,
        scope=scope,
        live=live,
    )
    claimed = store.claim_due(sent_at, limit=100, lease=timedelta(minutes=5), scope=scope)
    assert claimed and all(r.live is live for r in claimed)
    store.mark_send_started([([r.key for r in claimed], claimed[0].claim_token)], sent_at)
    store.settle(
        [Settlement(r.key, r.claim_token, Status.SENT, http_status=204) for r in claimed], sent_at
    )


def test_delays_are_read_for_live_rows_only(store: StateStore) -> None:
    sent = NOW + timedelta(minutes=1)
    _capture_and_send(
        store,
        [_row("live1", changed_at=NOW - timedelta(seconds=20))],
        live=True,
        sent_at=sent,
        scope="daemon",
    )
    _capture_and_send(
        store,
        [_row("first", changed_at=NOW - timedelta(days=2))],
        live=False,
        sent_at=sent,
        scope="daemon",
    )
    _capture_and_send(
        store,
        [_row("back", changed_at=NOW - timedelta(days=20), scope="backfill:x")],
        live=False,
        sent_at=sent,
        scope="backfill:x",
    )
    delays = list(store.iter_delays(NOW))
    assert [(d.connector, d.delay_s) for d in delays] == [("crm", 80.0)]
    assert list(store.iter_delays(sent + timedelta(seconds=1))) == []
    assert list(store.iter_delays(NOW, sent)) == []  # [start, end)


def test_had_ok_capture_ignores_backfills_and_failures(store: StateStore) -> None:
    def run(kind: str, status: str) -> None:
        run_id = store.start_run("crm", kind, NOW)
        store.finish_run(
            run_id,
            NOW,
            status=status,
            captured=0,
            rejected=0,
            api_calls=0,
            api_used=None,
            api_limit=None,
        )

    assert not store.had_ok_capture("crm")
    run("backfill", "ok")
    run("run", "failed")
    run("run", "stopped")
    assert not store.had_ok_capture("crm")
    run("run", "ok")
    assert store.had_ok_capture("crm")
    assert not store.had_ok_capture("other")


def test_a_version_3_database_is_read_as_it_is_and_gains_the_live_column(
    state_url: str,
) -> None:
    first = StateStore.open(state_url)
    _capture_and_send(
        first,
        [_row("old", changed_at=NOW - timedelta(seconds=20))],
        live=True,
        sent_at=NOW,
        scope="daemon",
    )
    with first.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN live"))
        conn.execute(
            sa.delete(schema.schema_version).where(
                schema.schema_version.c.version >= schema.LIVE_VERSION
            )
        )
    first.close()
    reader = StateStore.open_read_only(state_url)
    try:
        assert reader.version == schema.LIVE_VERSION - 1
        assert list(reader.iter_delays(NOW - timedelta(days=1))) == []  # nothing to tell
        (row,) = reader.list_outbox()
        assert row.key == "old" and row.live is None  # no such column yet
        assert [r.key for r in reader.iter_outbox_summary()] == ["old"]
    finally:
        reader.close()
    store = StateStore.open(state_url)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        (row,) = store.list_outbox()
        assert row.live is None  # captured before: not known, so not counted
        assert list(store.iter_delays(NOW - timedelta(days=1))) == []
        _capture_and_send(
            store,
            [_row("new", changed_at=NOW - timedelta(seconds=5))],
            live=True,
            sent_at=NOW,
            scope="daemon",
        )
        assert [d.delay_s for d in store.iter_delays(NOW - timedelta(days=1))] == [5.0]
    finally:
        store.close()


def test_a_new_database_has_the_live_column(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("outbox")}
        assert "live" in columns
        assert store.schema_version() == schema.LIVE_VERSION == schema.SCHEMA_VERSION
    finally:
        store.close()


def test_delay_summary_of_no_rows_is_empty() -> None:
    assert DeliveryDelay.of([]) == DeliveryDelay()
    d = DeliveryDelay.of([float(s) for s in range(1, 101)])
    assert (d.events, d.p50_s, d.max_s) == (100, 50.5, 100.0)
    assert d.p95_s == pytest.approx(95.05)
