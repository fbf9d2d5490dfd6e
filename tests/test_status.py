"""`ga4sync status` after a real sandbox run, on both backends; GA4 window classes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.ga4.windows import Ga4Window, classify_sent_event, classify_window
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.ops.status import SILENT_RUN_AFTER, percentile, run_result
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.owners import ProcessOwner, process_start
from ga4sync.state.readings import RunRecord

from tests.conftest import EngineFactory


@dataclass
class Scenario:
    engine: Engine
    config: Config
    mapping: Path


def run_scenario(sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp: Path) -> Scenario:
    """Five deals: two won today (one with a session id), one qualified 30 h ago, one won
    without a client id, one qualified with an email in the client-id field."""
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    mapping = tmp / "opportunity.yaml"
    mapping.write_text((MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text())

    def deal(client_id: str | None, stage: str, moved: timedelta, **extra: object) -> str:
        fields = {"GA_Client_ID__c": client_id} if client_id else {}
        oid = data.create_opportunity(
            now - moved - timedelta(hours=1), stage="Prospecting", Amount=50.0, **fields, **extra
        )
        data.move_opportunity(oid, stage, now - moved)
        return oid

    deal("GA1.1.100.1", "Closed Won", timedelta(hours=1), GA_Session_ID__c="1700000000")
    deal("200.2", "Closed Won", timedelta(hours=1))
    deal("300.3", "Qualification", timedelta(hours=30))
    deal(None, "Closed Won", timedelta(hours=2))
    deal("someone@example.com", "Qualification", timedelta(hours=2))
    engine, config = make_engine(mapping=mapping)
    report = engine.run_once()
    assert report.ok and report.delivery.sent == 3
    return Scenario(engine, config, mapping)


def _status_json(config: Config) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["--config", str(config.path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_status_shows_real_figures_from_a_sandbox_run(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    sc = run_scenario(sandbox, make_engine, tmp_path)
    doc = _status_json(sc.config)
    (sf,) = doc["connectors"]
    assert sf["name"] == "salesforce" and sf["type"] == "salesforce"
    (run,) = sc.engine.store.last_runs(limit=1)
    assert sf["last_run"]["result"] == "ok" == run.status
    assert sf["last_run"]["api_calls"] == run.api_calls > 0
    assert sf["last_run"]["api_used"] == run.api_used
    assert sf["last_run"]["api_limit"] == run.api_limit
    assert sf["last_ok_at"] is not None
    counts = sc.engine.store.count_by_status()
    assert {k: v for k, v in sf["queue"].items() if v} == counts
    assert sf["queue"]["sent"] == 3
    # Freshness: sandbox time runs 20 minutes behind the engine's clock.
    fresh = sf["freshness"]
    assert fresh["events"] == 3
    assert 3600 + 1200 - 60 < fresh["p50_s"] < 3600 + 1200 + 120
    assert fresh["p50_s"] < fresh["p90_s"] < fresh["p99_s"]
    assert 24 * 3600 < fresh["p99_s"] < 31 * 3600  # the qualify_lead 30 h 20 min late
    # Two purchases within 24 h (one carried a session id), one qualify_lead 30 h late.
    assert sf["windows"] == {"within_24h": 2, "within_72h": 1, "too_old": 0}
    assert sf["session_joinable"] == 1
    # Client-id match rate per stage; creations (no rule maps them) are left out.
    match = {m["stage"]: m for m in sf["match"]}
    assert set(match) == {"Closed Won", "Qualification"}
    assert (match["Closed Won"]["usable"], match["Closed Won"]["missing"]) == (2, 1)
    assert (match["Qualification"]["usable"], match["Qualification"]["bad"]) == (1, 1)
    assert match["Closed Won"]["rate"] == pytest.approx(2 / 3)
    assert sf["match_rate"] == pytest.approx(3 / 5)


def test_status_table_shows_mapping_warnings_and_the_match_rate(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    sc = run_scenario(sandbox, make_engine, tmp_path)
    sc.mapping.write_text(sc.mapping.read_text().replace("event: purchase", "event: 9purchase"))
    sc.engine.run_once()  # the broken edit: the last good mapping is kept, with a warning
    result = CliRunner().invoke(main, ["--config", str(sc.config.path), "status"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "│ salesforce │ Closed Won │ 2 │ 1 │ 0 │ 66.7% │" in out
    assert "60.0%" in out  # 3 of 5 mapped transitions had a usable client id
    assert "│ salesforce │ Qualification │ 1 │ 0 │ 1 │ 50.0% │" in out
    assert "warning: mapping file is broken; using the last good version" in out
    assert "within_24h 2, within_72h 1, too_old 0; joinable to the web session 1" in out
    doc = _status_json(sc.config)
    warnings = "\n".join(doc["connectors"][0]["last_run"]["warnings"])
    assert "9purchase" in warnings


def test_status_of_an_empty_store_says_never_ran(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    _, config = make_engine()
    result = CliRunner().invoke(main, ["--config", str(config.path), "status"])
    assert result.exit_code == 0, result.output
    assert "never ran" in result.output
    assert "nothing sent in the last 7d" in result.output


def test_status_table_titles_are_not_wrapped_to_a_narrow_table(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    """The delay table is four short columns; its title was cut into two lines there."""
    sc = run_scenario(sandbox, make_engine, tmp_path)
    result = CliRunner().invoke(main, ["--config", str(sc.config.path), "status"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert "Delivery delay (live CRM move -> GA4 accepted, last 24h)" in lines
    assert "Client-id match rate (transitions a rule maps, by stage)" in lines


@pytest.mark.parametrize(
    ("age", "window"),
    [
        (timedelta(seconds=-5), Ga4Window.WITHIN_24H),  # CRM clock slightly ahead
        (timedelta(hours=24), Ga4Window.WITHIN_24H),
        (timedelta(hours=24, seconds=1), Ga4Window.WITHIN_72H),
        (timedelta(hours=72), Ga4Window.WITHIN_72H),
        (timedelta(hours=72, seconds=1), Ga4Window.TOO_OLD),
    ],
)
def test_window_edges(age: timedelta, window: Ga4Window) -> None:
    sent = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert classify_window(sent - age, sent) is window
    joined = classify_sent_event(sent - age, sent, session_id="17")
    assert joined.session_joinable is (window is Ga4Window.WITHIN_24H)
    assert not classify_sent_event(sent - age, sent, session_id=" ").session_joinable


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([float(i) for i in range(101)], 90) == 90.0


def test_status_of_a_csv_connector_counts_rejected_rows_and_client_ids(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    from tests.csv_support import berlin, csv_engine, write_rows

    engine, config = csv_engine(sandbox, state_url)
    t = berlin(sandbox.clock.now() - timedelta(hours=1))
    write_rows(
        config.base_dir / "inbox" / "calls.csv",
        [
            f"K-1,call,{t},0,1.1,,",
            f"K-2,call,{t},0,,,",  # no client id
            f"K-3,call,{t},0,order-77,,",  # not a client id
            "K-4,call,never,0,1.4,,",  # bad time: rejected, not in the match rate
            f"K-5,purchase,{t},9,1.5,,",
        ],
    )
    try:
        assert engine.run_once().delivery.sent == 2
    finally:
        engine.close()
        engine.store.close()
    (pos,) = _status_json(config)["connectors"]
    assert (pos["name"], pos["type"]) == ("pos", "csv")
    assert pos["last_run"]["rejected"] == 1 and pos["last_run"]["captured"] == 5
    assert pos["queue"]["invalid"] == 1 and pos["queue"]["sent"] == 2
    match = {m["stage"]: (m["usable"], m["missing"], m["bad"]) for m in pos["match"]}
    assert match == {"call": (1, 1, 1), "purchase": (1, 0, 0)}
    assert pos["match_rate"] == pytest.approx(2 / 4)


STARTS_A_RUN_THEN_WAITS = """
import sys, time
from datetime import UTC, datetime
from ga4sync.state.store import StateStore
store = StateStore.open(sys.argv[1])
store.start_run("salesforce", "run", datetime.now(UTC))
print("started", flush=True)
time.sleep(600)
"""


def test_a_run_killed_by_sigkill_is_shown_as_died_not_running(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STARTS_A_RUN_THEN_WAITS, state_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        config = load_config(sandbox.write_config(state_url=state_url))
        alive = _status_json(config)["connectors"][0]["last_run"]
        assert alive["result"] == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    run = _status_json(config)["connectors"][0]["last_run"]
    assert run["result"] == "died"
    assert f"process {child.pid}" in run["error"] and "stopped without finishing" in run["error"]


def _record(**changes: object) -> RunRecord:
    started = datetime(2026, 11, 20, 12, tzinfo=UTC)
    base = RunRecord(
        id=1,
        connector="salesforce",
        kind="run",
        started_at=started,
        finished_at=None,
        status="running",
        captured=0,
        rejected=0,
        api_calls=0,
        api_used=None,
        api_limit=None,
        error=None,
        warnings=[],
        owner=ProcessOwner("another-host", 4242, "1"),
        heartbeat_at=started,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_running_run_on_another_host_is_interrupted_once_its_heartbeat_is_old() -> None:
    run = _record()
    assert run_result(run, run.started_at + SILENT_RUN_AFTER) == "running"
    assert run_result(run, run.started_at + SILENT_RUN_AFTER + timedelta(seconds=1)) == (
        "interrupted"
    )
    moved = _record(heartbeat_at=run.started_at + timedelta(hours=1))
    assert run_result(moved, run.started_at + timedelta(hours=1, minutes=5)) == "running"
    assert run_result(_record(status="ok"), run.started_at + timedelta(days=9)) == "ok"
    # A run written before owners were recorded: only its start time speaks for it.
    legacy = _record(owner=None, heartbeat_at=None)
    assert run_result(legacy, run.started_at + timedelta(hours=2)) == "interrupted"


def test_a_reused_pid_does_not_keep_a_dead_run_alive() -> None:
    me = ProcessOwner.current()
    parent = ProcessOwner(me.host, os.getppid(), "not-its-start-time")
    assert parent.is_gone()  # that pid lives, but it is another process than the run's
    assert not ProcessOwner(me.host, os.getppid(), process_start(os.getppid())).is_gone()
    assert not me.is_gone()
