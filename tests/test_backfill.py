"""`ga4sync backfill` against the sandbox on both backends: resumable, dry run, old events."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.clock import from_micros
from ga4sync.pipeline.backfill import Backfill, BackfillRequest, parse_when, parse_window
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state import schema
from ga4sync.state.store import StateStore

from bench.chaos import expected_transitions


def small_pages_config(sandbox: SandboxEnvironment, state_url: str) -> Path:
    """Pages of 200 history rows, so a backfill of a few hundred changes has several pages."""
    path = sandbox.write_config(state_url=state_url)
    doc = yaml.safe_load(path.read_text())
    doc["connectors"][0]["page_size"] = 200
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def window(days_back: int = 4) -> BackfillRequest:
    now = datetime.now(UTC)
    return BackfillRequest("salesforce", now - timedelta(days=days_back), now)


def test_interrupted_backfill_resumes_and_sends_each_event_once(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    sandbox.seed(count=150, seed=21, span=timedelta(hours=60))
    config = load_config(small_pages_config(sandbox, state_url))
    request = window()
    store = StateStore.open(state_url)
    try:
        first = Engine(config, store)
        pages = Counter[str]()

        def stop_after_first_page(_report: object) -> None:
            pages["seen"] += 1
            first.stop_event.set()

        stopped = Backfill(first, request).run(on_page=stop_after_first_page)
        first.close()
        assert stopped.stopped and pages["seen"] == 1
        assert 0 < stopped.captured < len(expected_transitions(sandbox))
        # Delivery runs beside the capture: the committed page may have been sent in part
        # before the stop reached the sender; what was not waits for the next pass.
        assert stopped.sent == len(sandbox.ga4.events())
        assert stopped.sent + stopped.waiting + sum(stopped.skipped.values()) == stopped.captured
        assert not stopped.failed
        assert store.get_watermark("salesforce", "Opportunity", request.scope) is not None
        assert store.get_watermark("salesforce", "Opportunity") is None  # daemon's untouched

        second = Engine(config, store)
        done = Backfill(second, request).run()
        second.close()
        assert done.capture_status == "ok" and not done.failed and done.waiting == 0
        rows = store.list_outbox()
        assert {r.scope for r in rows} == {request.scope}
        assert len(rows) == len(expected_transitions(sandbox))
        assert done.sent == len(sandbox.ga4.events()) > 0
        assert done.sent + sum(done.skipped.values()) == len(rows)
        keys = Counter(
            (e["client_id"], e["name"], e["timestamp_micros"]) for e in sandbox.ga4.events()
        )
        assert max(keys.values()) == 1
    finally:
        store.close()


def _tables_empty(url: str) -> bool:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return all(
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 0
                for t in (schema.outbox, schema.runs, schema.watermarks, schema.locks)
                if t.name in names
            )
    finally:
        engine.dispose()


def test_dry_run_shows_what_would_be_sent_and_writes_nothing(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    sandbox.seed(count=20, seed=4)
    config = sandbox.write_config(state_url=state_url)
    start = (datetime.now(UTC) - timedelta(days=4)).date().isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    args = ["--config", str(config), "backfill", "--connector", "salesforce"]
    result = CliRunner().invoke(main, [*args, "--from", start, "--to", end, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "nothing written, nothing sent" in result.output
    would = int(result.output.split("would send ", 1)[1].split()[0])
    assert would > 0
    assert sandbox.ga4.events() == []
    if state_url.startswith("sqlite:///"):
        assert not Path(state_url[len("sqlite:///") :]).exists()
    assert _tables_empty(state_url)

    # The real run sends exactly what the dry run announced.
    real = CliRunner().invoke(main, [*args, "--from", start, "--to", end])
    assert real.exit_code == 0, real.output
    assert len(sandbox.ga4.events()) == would
    # Now everything is in the outbox: a dry run would send nothing more.
    again = CliRunner().invoke(main, [*args, "--from", start, "--to", end, "--dry-run"])
    assert "would send 0" in again.output
    assert f"already in outbox {len(expected_transitions(sandbox))}" in again.output


def _won(sandbox: SandboxEnvironment, at: datetime, client: str) -> str:
    data = sandbox.salesforce.data
    oid = data.create_opportunity(
        at - timedelta(hours=1), stage="Prospecting", Amount=100.0, GA_Client_ID__c=client
    )
    data.move_opportunity(oid, "Closed Won", at)
    return oid


def test_old_events_are_skipped_and_reported_by_default(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    now = datetime.now(UTC)
    _won(sandbox, now - timedelta(days=5), "1.1")
    fresh = _won(sandbox, now - timedelta(hours=2), "2.2")
    config = sandbox.write_config(state_url=state_url)
    start = (now - timedelta(days=7)).date().isoformat()
    args = ["--config", str(config), "backfill", "--connector", "salesforce", "--from", start]
    # `--to today`: a bare date includes that whole day, so the win two hours ago is in.
    result = CliRunner().invoke(main, [*args, "--to", now.date().isoformat()])
    assert result.exit_code == 0, result.output
    skipped_line = next(line for line in result.output.splitlines() if line.startswith("skipped"))
    assert "too_old 1" in skipped_line  # the old win; the creations match no rule
    assert "older than GA4's 72 h" in result.output
    assert [e["params"]["transaction_id"] for e in sandbox.ga4.events()] == [fresh]


def test_clamp_sends_old_events_at_now_minus_72h_with_the_crm_time(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    now = datetime.now(UTC)
    old = _won(sandbox, now - timedelta(days=5), "1.1")
    config = sandbox.write_config(state_url=state_url)
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(config),
            "backfill",
            "--connector",
            "salesforce",
            "--from",
            (now - timedelta(days=7)).date().isoformat(),
            "--to",
            (now + timedelta(days=1)).date().isoformat(),
            "--old-events",
            "clamp",
        ],
    )
    assert result.exit_code == 0, result.output
    (event,) = [e for e in sandbox.ga4.events() if e["name"] == "purchase"]
    assert event["params"]["transaction_id"] == old
    assert event["params"]["crm_changed_at"].startswith(
        (now - timedelta(days=5)).date().isoformat()
    )
    sent_at = from_micros(event["timestamp_micros"])
    assert now - timedelta(hours=72) < sent_at < now - timedelta(hours=71)


def test_window_and_dates_are_checked() -> None:
    assert parse_when("2026-11-20", option="--from") == datetime(2026, 11, 20, tzinfo=UTC)
    assert parse_when("2026-11-20T13:00:00Z", option="--from").hour == 13
    assert BackfillRequest(
        "sf", parse_when("2026-11-01", option="--from"), parse_when("2026-11-08", option="--to")
    ).scope == ("backfill:2026-11-01:2026-11-08")
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(Path(__file__).parent.parent / "ga4sync.example.yaml"),
            "backfill",
            "--connector",
            "salesforce",
            "--from",
            "2026-11-08",
            "--to",
            "2026-11-01",
        ],
    )
    assert result.exit_code == 2
    assert "--to (2026-11-01) must be after --from (2026-11-08)" in result.output
    # A bare date as --to includes that whole day; a date-time is exact, its end excluded.
    assert parse_window("2026-11-01", "2026-11-07") == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 8, tzinfo=UTC),
    )
    assert parse_window("2026-11-01", "2026-11-01")[1] == datetime(2026, 11, 2, tzinfo=UTC)
    assert parse_window("2026-11-01T06:00:00Z", "2026-11-01T07:30:00+01:00")[1] == datetime(
        2026, 11, 1, 6, 30, tzinfo=UTC
    )
    bad = CliRunner().invoke(
        main,
        [
            "--config",
            str(Path(__file__).parent.parent / "ga4sync.example.yaml"),
            "backfill",
            "--connector",
            "salesforce",
            "--from",
            "last week",
            "--to",
            "2026-11-01",
        ],
    )
    assert bad.exit_code == 2 and "--from `last week` is not a date" in bad.output
