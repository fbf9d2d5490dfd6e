"""An integration user that sharing keeps from seeing every record (issue 12): a warning naming
what to grant, in the run, in `status` and in `mappings validate`, never an empty success.

The sandbox org imitates sharing: with Opportunity at Private and a user without "View All" or
"View All Data", records other users own (and their history rows) are left out of every query
answer, silently, as Salesforce does. The real simple-salesforce talks to it over HTTPS.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.connectors.salesforce import _visibility_seen
from ga4sync.core.model import TimeWindow
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_salesforce_auth import _auth, _connector

OTHER_REP = "005SBX0000000OTHER"


@pytest.fixture(autouse=True)
def _fresh_visibility_answers() -> None:
    """Each test's org is new: no answer carried over from a sandbox on the same port."""
    _visibility_seen.clear()


def _now(sandbox: SandboxEnvironment) -> datetime:
    return sandbox.clock.now().replace(microsecond=0)


def _two_deals(sandbox: SandboxEnvironment) -> tuple[str, str]:
    """One opportunity the integration user owns, one another rep owns; each moved once."""
    data = sandbox.salesforce.data
    t0 = _now(sandbox) - timedelta(hours=1)
    own = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c="1.1")
    other = data.create_opportunity(
        t0, stage="Prospecting", GA_Client_ID__c="2.2", OwnerId=OTHER_REP
    )
    for oid in (own, other):
        data.move_opportunity(oid, "Closed Won", t0 + timedelta(minutes=5))
    return own, other


def _records(engine_store: object) -> set[str]:
    return {r.record_id for r in engine_store.list_outbox()}  # type: ignore[attr-defined]


def test_a_user_without_view_all_misses_other_owners_records_and_is_told_what_to_grant(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    sandbox.salesforce.data.access.restrict("Opportunity")
    own, other = _two_deals(sandbox)
    engine, config = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "ok"
    # What Salesforce does: the other rep's deal is simply not in any answer.
    assert _records(engine.store) == {own}
    (warning,) = report.warnings
    assert "sees only the Opportunities it owns or that are shared with it" in warning
    assert "Opportunity sharing is Private" in warning
    assert '"View All" on Opportunities' in warning and '"View All Data"' in warning
    assert "Object Settings > Opportunities" in warning
    # Sharing model, user permissions, userinfo (not an API call), assignments, object perms.
    assert report.api_calls == 3 + 4
    # Every run says it, from the day's one answer: no further calls for it.
    again = engine.capture("salesforce")
    assert again.warnings == report.warnings and again.api_calls == 1
    # `ga4sync status` shows it under the connector's last run.
    result = CliRunner().invoke(main, ["--config", str(config.path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    (sf,) = json.loads(result.output)["connectors"]
    assert any("sees only the Opportunities" in w for w in sf["last_run"]["warnings"])


def test_the_userinfo_call_is_counted_apart_from_the_api_calls(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """`GET /services/oauth2/userinfo` is OpenID Connect's identity service, outside the REST
    API the org's daily allocation covers (README, Salesforce): its own figure, like logins."""
    sandbox.salesforce.data.access.restrict("Opportunity")
    _two_deals(sandbox)
    connector = _connector(sandbox, _auth("client_credentials", sandbox, tmp_path))
    try:
        start = sandbox.clock.now() - timedelta(hours=3)
        list(connector.fetch_transitions(TimeWindow(start=start)))
    finally:
        connector.close()
    assert any("sees only the Opportunities" in w for w in connector.warnings)
    assert sandbox.salesforce.userinfo_calls == 1
    assert connector.usage.extra["userinfo"] == "1"
    assert connector.usage.extra["logins"] == "1"
    assert connector.usage.calls == sandbox.salesforce.data_requests()


@pytest.mark.parametrize("grant", ["view_all", "view_all_data", "public_read_only"])
def test_view_all_view_all_data_or_a_public_sharing_model_sees_every_record_without_a_warning(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, grant: str
) -> None:
    access = sandbox.salesforce.data.access
    access.restrict("Opportunity")
    if grant == "view_all":
        access.view_all.add("Opportunity")
    elif grant == "view_all_data":
        access.view_all_data = True
    else:
        access.sharing["Opportunity"] = "Read"  # Public Read Only
    own, other = _two_deals(sandbox)
    engine, _ = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.warnings == []
    assert _records(engine.store) == {own, other}
    checks = {"public_read_only": 1, "view_all_data": 2, "view_all": 4}[grant]
    assert report.api_calls == 3 + checks  # the check stops at the first "sees all"


def test_a_user_who_may_not_read_setup_gets_could_not_check_not_an_error(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    access = sandbox.salesforce.data.access
    access.restrict("Opportunity")
    access.setup_readable = False  # no "View Setup and Configuration"
    own, _ = _two_deals(sandbox)
    engine, _ = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "ok" and _records(engine.store) == {own}
    (warning,) = report.warnings
    assert warning.startswith("could not check whether the integration user sees every")
    assert "INVALID_TYPE: sObject type 'PermissionSetAssignment' is not supported" in warning
    assert '"View All" on Opportunities' in warning
    assert '"View Setup and Configuration"' in warning


def test_the_check_waits_for_the_read_and_a_spent_quota_skips_it_silently(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """The check is asked after the read, so it never spends calls a read needed; when the
    quota runs out on it, it says nothing and is asked again on the next run."""
    sandbox.salesforce.data.access.restrict("Opportunity")
    _two_deals(sandbox)
    sandbox.salesforce.allow_calls(3)  # exactly the read
    engine, _ = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.captured > 0 and report.warnings == []
    sandbox.salesforce.allow_calls(100)
    again = engine.capture("salesforce")
    assert any("sees only the Opportunities" in w for w in again.warnings)


def test_mappings_validate_says_it_before_the_first_run(
    sandbox: SandboxEnvironment, tmp_path: Path, state_url: str
) -> None:
    sandbox.salesforce.data.access.restrict("Opportunity")
    config = sandbox.write_config(state_url=state_url)
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output
    assert "sees only the Opportunities it owns" in " ".join(result.output.split())


def test_organization_defaults_answer_when_entity_definition_does_not(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """EntityDefinition refused: Organization.DefaultOpportunityAccess (`Read`, Public Read
    Only) says every opportunity is seen, in two calls."""
    access = sandbox.salesforce.data.access
    access.restrict("Opportunity")
    access.sharing["Opportunity"] = "Read"
    access.refused.add("EntityDefinition")
    own, other = _two_deals(sandbox)
    engine, _ = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.warnings == []
    assert _records(engine.store) == {own, other}
    assert report.api_calls == 3 + 2


def test_ga4sync_run_prints_the_warning(
    sandbox: SandboxEnvironment, tmp_path: Path, state_url: str
) -> None:
    sandbox.salesforce.data.access.restrict("Opportunity")
    _two_deals(sandbox)
    config = sandbox.write_config(state_url=state_url)
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "salesforce warning: the integration user sees only the Opportunities" in text
