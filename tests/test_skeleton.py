"""The walking skeleton end to end: real simple-salesforce over HTTPS, real requests to GA4."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.model import Status
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.sandbox.salesforce_data import SalesforceData
from ga4sync.sandbox.scenario import ScenarioError, apply_salesforce, load_scenario

from tests.conftest import EngineFactory


def test_demo_command_shows_events_then_new_ones_then_none() -> None:
    result = CliRunner().invoke(main, ["demo", "--records", "8", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "Run 1: events sent to GA4" in result.output
    assert "Run 3: nothing new: no events sent" in result.output
    assert "demo failed" not in result.output


def test_second_run_sends_nothing(sandbox: SandboxEnvironment, make_engine: EngineFactory) -> None:
    sandbox.seed(count=15, seed=3)
    engine, _ = make_engine()
    first = engine.run_once()
    assert first.ok and first.delivery.sent > 0
    assert len(sandbox.ga4.events()) == first.delivery.sent
    second = engine.run_once()
    assert second.captures[0].captured == 0
    assert second.delivery.sent == 0
    assert len(sandbox.ga4.events()) == first.delivery.sent


def test_transition_seen_in_two_overlapping_polls_is_sent_once(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    oid = data.create_opportunity(
        now - timedelta(hours=2), stage="Prospecting", Amount=100.0, GA_Client_ID__c="111.222"
    )
    data.move_opportunity(oid, "Closed Won", now - timedelta(minutes=5))
    # An overlap of 3 hours makes the second poll re-read the same history rows.
    engine, _ = make_engine(overlap="3h")
    assert engine.run_once().delivery.sent == 1
    again = engine.run_once()
    assert again.captures[0].duplicates >= 1
    assert again.delivery.sent == 0
    events = sandbox.ga4.events()
    assert [e["name"] for e in events] == ["purchase"]
    assert events[0]["params"]["transaction_id"] == oid
    assert events[0]["client_id"] == "111.222"


def test_record_without_client_id_is_skipped_and_others_go(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    good = data.create_opportunity(
        now - timedelta(hours=3), stage="Prospecting", Amount=10.0, GA_Client_ID__c="GA1.1.333.444"
    )
    bad = data.create_opportunity(now - timedelta(hours=3), stage="Prospecting", Amount=20.0)
    for oid in (good, bad):
        data.move_opportunity(oid, "Closed Won", now - timedelta(hours=1))
    engine, _ = make_engine()
    report = engine.run_once()
    assert report.delivery.sent == 1
    rows = {
        r.record_id: r
        for r in engine.store.list_outbox(statuses=["sent", "skipped"])
        if r.to_value == "Closed Won"
    }
    assert rows[good].status == Status.SENT
    assert rows[bad].status == Status.SKIPPED
    assert rows[bad].reason.startswith("no_client_id")
    assert "GA_Client_ID__c" in rows[bad].reason
    assert sandbox.ga4.events()[0]["client_id"] == "333.444"  # cookie form normalised


def test_example_config_loads(tmp_path: Path, monkeypatch: object) -> None:
    from ga4sync.pipeline.config import load_config

    config = load_config(Path(__file__).parent.parent / "ga4sync.example.yaml")
    assert config.connectors[0].type == "salesforce"
    assert config.ga4.api_secret.env == "GA4SYNC_API_SECRET"


def test_config_error_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("ga4:\n  measurement_id: UA-123\n  api_secret: {env: X}\nconnectors: []\n")
    result = CliRunner().invoke(main, ["--config", str(path), "run"])
    assert result.exit_code == 2
    assert f"{path}:2:3: ga4.measurement_id" in result.output
    assert f"{path}:4:1: connectors" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("every: 0s", "connectors[0].every: must be longer than 0s"),
        ('cron: "61 * * * *"', "`61 * * * *` is not a 5-field crontab"),
        ('every: 5m\n    cron: "* * * * *"', "set either `every` (e.g. 5m) or `cron`"),
    ],
)
def test_a_bad_schedule_is_named_with_its_line_when_the_config_loads(
    tmp_path: Path, schedule: str, message: str
) -> None:
    example = (Path(__file__).parent.parent / "ga4sync.example.yaml").read_text()
    assert "every: 5m " in example
    path = tmp_path / "ga4sync.yaml"
    path.write_text(example.replace("every: 5m ", schedule + " ", 1))
    result = CliRunner().invoke(main, ["--config", str(path), "status"])
    assert result.exit_code == 2, result.output
    assert f"{path}:" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_scenario_with_a_made_up_salesforce_id_is_refused_where_it_is_written(
    tmp_path: Path,
) -> None:
    """The sandbox refuses malformed ids in SOQL as Salesforce does; a scenario that invents
    one is told so when it is loaded, not by a failing sync later."""
    good = load_scenario(Path(__file__).parent.parent / "sandbox" / "scenarios" / "example.yaml")
    assert apply_salesforce(good, SalesforceData())
    path = tmp_path / "bad.yaml"
    path.write_text(
        "salesforce:\n  opportunities:\n"
        "    - id: opp-1\n      stages: [{stage: Prospecting, at: -2h}]\n"
    )
    with pytest.raises(
        ScenarioError,
        match=r"bad.yaml:3:7: salesforce.opportunities\[0\]\.id: `opp-1` is not a Salesforce",
    ):
        apply_salesforce(load_scenario(path), SalesforceData())
