"""Salesforce orgs differ: the shipped mappings run on a single-currency org, and a refused field
says whether the org lacks it or the integration user cannot see it (issue 12 §2).

Real simple-salesforce over HTTPS against the sandbox org, both state backends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.mapping.load import load_mapping
from ga4sync.mapping.model import FieldParam
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.pipeline.fetch_spec import mapping_version, spec_of
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.sandbox.salesforce_data import SalesforceData

from tests.conftest import EngineFactory


def _single_currency(sandbox: SandboxEnvironment) -> SalesforceData:
    sandbox.salesforce.data = SalesforceData(multi_currency=False)
    return sandbox.salesforce.data


def _won_deal(data: SalesforceData, now: datetime) -> str:
    t0 = now - timedelta(hours=1)
    oid = data.create_opportunity(t0, stage="Prospecting", Amount=250.0, GA_Client_ID__c="1.2")
    data.move_opportunity(oid, "Closed Won", t0 + timedelta(minutes=5))
    return oid


def test_shipped_mapping_runs_on_a_single_currency_org_with_the_mapping_currency(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = _single_currency(sandbox)
    assert "CurrencyIsoCode" not in data.field_names["Opportunity"]
    oid = _won_deal(data, sandbox.clock.now())
    engine, _ = make_engine()
    report = engine.run_once()
    assert report.ok, report
    purchase = next(e for e in sandbox.ga4.events() if e["name"] == "purchase")
    assert purchase["params"]["transaction_id"] == oid
    assert purchase["params"]["currency"] == "USD"  # the mapping's `currency:`
    assert purchase["params"]["value"] == 250.0
    # A second poll leaves the field out from its first query: no second refusal.
    before = sandbox.salesforce.requests[:]
    assert engine.run_once().ok
    assert not any("CurrencyIsoCode" in r for r in sandbox.salesforce.requests[len(before) :])


def test_a_multi_currency_org_still_sends_each_deals_own_currency(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    t0 = sandbox.clock.now() - timedelta(hours=1)
    oid = data.create_opportunity(t0, stage="Prospecting", Amount=9.0, GA_Client_ID__c="1.2")
    data.move_opportunity(oid, "Closed Won", t0 + timedelta(minutes=5), CurrencyIsoCode="EUR")
    engine, _ = make_engine()
    assert engine.run_once().ok
    purchase = next(e for e in sandbox.ga4.events() if e["name"] == "purchase")
    assert purchase["params"]["currency"] == "EUR"


def _mapping_reading(tmp_path: Path, field: str) -> Path:
    text = (MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text()
    text = text.replace("lead_source: {field: LeadSource", f"lead_source: {{field: {field}", 1)
    path = tmp_path / "opportunity.yaml"
    path.write_text(text)
    return path


def _qualified_deal(data: SalesforceData, now: datetime) -> None:
    t0 = now - timedelta(hours=1)
    oid = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c="1.2")
    data.move_opportunity(oid, "Qualification", t0 + timedelta(minutes=5))


def test_a_field_the_org_lacks_is_told_apart_from_one_the_user_cannot_see(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    _qualified_deal(data, sandbox.clock.now())
    data.add_field("Opportunity", "Partner_Tier__c")
    data.hide_field("Opportunity", "Partner_Tier__c")

    engine, _ = make_engine(mapping=_mapping_reading(tmp_path, "Partner_Tier__c"))
    hidden = engine.capture("salesforce")
    assert hidden.status == "failed"
    assert "`Partner_Tier__c` exists on Opportunity but the integration user cannot see it" in (
        hidden.error or ""
    ), hidden.error
    assert "Set Field-Level Security" in (hidden.error or "")

    engine, _ = make_engine(mapping=_mapping_reading(tmp_path, "Partnr_Tier__c"))
    absent = engine.capture("salesforce")
    assert absent.status == "failed"
    assert "Salesforce has no field `Partnr_Tier__c` on Opportunity in this org" in (
        absent.error or ""
    ), absent.error
    assert "field-level security" not in (absent.error or "")


def test_currency_iso_code_required_on_a_single_currency_org_says_multi_currency(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = _single_currency(sandbox)
    _won_deal(data, sandbox.clock.now())
    text = (MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text()
    path = tmp_path / "opportunity.yaml"
    path.write_text(text.replace(", optional: true}", "}"))
    engine, _ = make_engine(mapping=path)
    report = engine.capture("salesforce")
    assert report.status == "failed"
    error = report.error or ""
    assert "no field `CurrencyIsoCode` on Opportunity in this org" in error, error
    assert "multiple currencies" in error and "optional: true" in error
    assert "field-level security" not in error


def test_an_optional_field_hidden_from_the_user_is_left_out_with_a_warning(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    data.hide_field("Opportunity", "CurrencyIsoCode")
    _won_deal(data, sandbox.clock.now())
    engine, _ = make_engine()
    report = engine.run_once()
    assert report.ok
    capture = report.captures[0]
    assert capture.captured >= 2
    assert any(
        "Opportunity.CurrencyIsoCode exists but the integration user cannot see it" in w
        for w in capture.warnings
    ), capture.warnings
    purchase = next(e for e in sandbox.ga4.events() if e["name"] == "purchase")
    assert purchase["params"]["currency"] == "USD"


def test_validate_against_a_single_currency_org_accepts_the_shipped_mapping(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    _single_currency(sandbox)
    config = sandbox.write_config(state_url=state_url)
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert result.exit_code == 0, result.output
    assert "CurrencyIsoCode" not in result.output


def test_optional_fields_of_the_shipped_mapping_and_an_unchanged_digest() -> None:
    loaded = load_mapping(MAPPINGS_DIR / "salesforce_opportunity.yaml")
    assert spec_of(loaded.model).optional_fields == ("CurrencyIsoCode",)
    # `optional: false` is not part of the digest, so older mappings keep theirs.
    plain = loaded.model.model_copy(deep=True)
    for rule in plain.rules:
        for spec in rule.params.values():
            if isinstance(spec, FieldParam):
                spec.optional = False
    assert '"optional"' not in plain.model_dump_json(by_alias=True)
    assert mapping_version(plain) != mapping_version(loaded.model)
