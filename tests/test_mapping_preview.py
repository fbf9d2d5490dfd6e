"""`ga4sync mappings preview` and validate's field check, against the sandbox Salesforce.

Real simple-salesforce over HTTPS to the sandbox; the GA4 sandbox must receive nothing and no
state database may appear.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.sandbox.runner import SandboxEnvironment


def _seed(sandbox: SandboxEnvironment) -> dict[str, str]:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    ids: dict[str, str] = {}

    def opp(key: str, created: timedelta, **fields: object) -> str:
        ids[key] = data.create_opportunity(now - created, stage="Prospecting", **fields)
        return ids[key]

    won = opp("won", timedelta(hours=5), Amount=1200.0, GA_Client_ID__c="GA1.1.11.22")
    data.move_opportunity(won, "Closed Won", now - timedelta(hours=1))
    anonymous = opp("anonymous", timedelta(hours=5), Amount=300.0)
    data.move_opportunity(anonymous, "Closed Won", now - timedelta(hours=2))
    qualified = opp("qualified", timedelta(hours=6), Amount=50.0, GA_Client_ID__c="33.44")
    data.move_opportunity(qualified, "Qualification", now - timedelta(hours=3))
    old = opp("old", timedelta(days=5), Amount=10.0, GA_Client_ID__c="55.66")
    data.move_opportunity(old, "Closed Lost", now - timedelta(days=4))
    return ids


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "mappings", *args])


def test_preview_json_counts_every_outcome_and_sends_nothing(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    ids = _seed(sandbox)
    config = sandbox.write_config()
    out = tmp_path / "preview.json"
    result = _run(
        config, "preview", "--connector", "salesforce", "--since", "7d", "--format", "json",
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["transitions_seen"] == 8 and doc["sent"] == 0 and doc["recorded"] == 0
    summary = {
        (s["from_value"], s["to_value"], s["outcome"], s["result"]): s for s in doc["summary"]
    }
    assert summary[("Prospecting", "Closed Won", "send", "purchase")]["count"] == 1
    assert summary[("Prospecting", "Closed Won", "skip", "no_client_id")]["count"] == 1
    assert summary[("Prospecting", "Qualification", "send", "qualify_lead")]["rule"] == "qualified"
    assert summary[("Prospecting", "Closed Lost", "skip", "too_old")]["count"] == 1
    assert summary[("(new)", "Prospecting", "skip", "no_rule")]["count"] == 4
    purchase = next(t for t in doc["transitions"] if t["event"] == "purchase")
    assert purchase["record_id"] == ids["won"]
    assert purchase["params"] == {"transaction_id": ids["won"], "value": 1200, "currency": "USD"}

    assert sandbox.ga4.events() == []
    assert not list(sandbox.workdir.glob("*.db")), "preview must not create a state store"


def test_preview_table_and_csv(sandbox: SandboxEnvironment, tmp_path: Path) -> None:
    _seed(sandbox)
    config = sandbox.write_config()
    table = _run(config, "preview", "--connector", "salesforce", "--since", "36h")
    assert table.exit_code == 0, table.output
    assert "Preview of salesforce (Opportunity.StageName), last 36h: 6 transitions" in table.output
    assert "Nothing was sent or recorded." in table.output
    for text in ("purchase", "qualify_lead", "no_client_id", "no_rule", "send 2, skip 4"):
        assert text in table.output

    result = _run(config, "preview", "--connector", "salesforce", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert sum(int(r["count"]) for r in rows) == 8
    assert {r["event_or_reason"] for r in rows} >= {"purchase", "no_client_id", "too_old"}
    assert sandbox.ga4.events() == []


def test_preview_with_broken_mapping_is_a_clear_error(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    mapping = tmp_path / "broken.yaml"
    mapping.write_text("object: Opportunity\nstage_field: StageName\nrules: []\n")
    config = sandbox.write_config(mapping=mapping)
    result = _run(config, "preview", "--connector", "salesforce")
    assert result.exit_code == 2
    assert f"error: {mapping}:1:1: client_id_field: required key" in result.output
    assert "Traceback" not in result.output


def test_validate_checks_field_names_against_salesforce_describe(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    mapping = tmp_path / "opportunity.yaml"
    text = (MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text()
    mapping.write_text(
        text.replace("lead_status: {field: StageName", "lead_status: {field: Stagename")
    )
    config = sandbox.write_config(mapping=mapping)
    result = _run(config, "validate")
    assert result.exit_code == 1, result.output
    line, col = next(
        (n, t.index("field") + 1) for n, t in enumerate(text.splitlines(), 1) if "lead_status" in t
    )
    assert (
        f'{mapping}:{line}:{col}: rule 2 ("working"), params.lead_status.field: unknown field '
        "`Stagename` on "
        "Opportunity, did you mean `StageName`? (fields come from the Salesforce describe of "
        "Opportunity) — write `StageName`"
    ) in result.output
    assert any(r.endswith("/sobjects/Opportunity/describe") for r in sandbox.salesforce.requests)

    mapping.write_text(text)
    assert _run(config, "validate").exit_code == 0
    offline = _run(config, "validate", "--offline", str(mapping))
    assert offline.exit_code == 0 and "ok " in offline.output


def test_validate_notes_when_the_crm_cannot_list_fields(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    config = sandbox.write_config()
    sandbox.salesforce.expire_sessions()
    result = _run(config, "validate")
    assert result.exit_code == 0, result.output
    assert "note: field names in" in result.output and "not checked" in result.output
    assert "sandbox-session" not in result.output
