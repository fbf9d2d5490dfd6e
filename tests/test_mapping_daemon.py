"""A mapping edited between runs: good edits take effect, broken ones keep the last good mapping.

Driven through Engine.run_once against the sandbox Salesforce and GA4, on both state backends.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory

BROKEN_EDIT = """\
object: Opportunity
stage_field: StageName
client_id_field: GA_Client_ID__c
rules:
  - name: won
    to: Closed Won
    event: session_start
    colour: green
"""

CHANGED_EDIT = """\
object: Opportunity
stage_field: StageName
client_id_field: GA_Client_ID__c
rules:
  - name: won
    to: Closed Won
    event: close_convert_lead
    params:
      deal_id: {field: Id}
"""


def _won(sandbox: SandboxEnvironment, minutes_ago: int, client: str) -> str:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    oid = data.create_opportunity(
        now - timedelta(hours=2), stage="Prospecting", Amount=100.0, GA_Client_ID__c=client
    )
    data.move_opportunity(oid, "Closed Won", now - timedelta(minutes=minutes_ago))
    return oid


def test_broken_edit_keeps_last_good_mapping_and_fix_takes_effect(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    mapping = tmp_path / "opportunity.yaml"
    mapping.write_text((MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text())
    engine, _ = make_engine(mapping=mapping, overlap="3h")

    first = _won(sandbox, 50, "1.1")
    report = engine.run_once()
    assert report.ok and report.captures[0].warnings == []
    assert [(e["name"], e["params"]["transaction_id"]) for e in sandbox.ga4.events()] == [
        ("purchase", first)
    ]

    mapping.write_text(BROKEN_EDIT)
    second = _won(sandbox, 30, "2.2")
    report = engine.run_once()
    capture = report.captures[0]
    assert capture.status == "ok"
    assert len(capture.warnings) == 1
    warning = capture.warnings[0]
    assert "mapping file is broken; using the last good version" in warning
    assert f'{mapping}:7:5: rule 1 ("won"), event: event name `session_start` is reserved' in (
        warning
    )
    assert f'{mapping}:8:5: rule 1 ("won"), colour: unknown key `colour`' in warning
    events = sandbox.ga4.events()
    assert [(e["name"], e["params"]["transaction_id"]) for e in events[1:]] == [
        ("purchase", second)
    ], "the broken edit must not stop capture: the last good mapping sends"
    stored = engine.store.last_runs(limit=1)[0]
    assert any("event name `session_start` is reserved" in w for w in stored.warnings)

    mapping.write_text(CHANGED_EDIT)
    third = _won(sandbox, 10, "3.3")
    report = engine.run_once()
    assert report.captures[0].warnings == []
    new = sandbox.ga4.events()[2:]
    assert [(e["name"], e["params"]["deal_id"]) for e in new] == [("close_convert_lead", third)]
    assert engine.store.last_runs(limit=1)[0].warnings == []


def test_broken_mapping_at_first_start_fails_the_connector_with_lines(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    mapping = tmp_path / "opportunity.yaml"
    mapping.write_text(BROKEN_EDIT)
    engine, _ = make_engine(mapping=mapping, overlap="3h")
    oid = _won(sandbox, 20, "4.4")
    report = engine.run_once()
    capture = report.captures[0]
    assert capture.status == "failed" and capture.captured == 0
    assert capture.error is not None and f"{mapping}:7:5" in capture.error
    assert sandbox.ga4.events() == []

    mapping.write_text(CHANGED_EDIT)
    report = engine.run_once()
    assert report.ok
    assert [e["params"]["deal_id"] for e in sandbox.ga4.events()] == [oid]
