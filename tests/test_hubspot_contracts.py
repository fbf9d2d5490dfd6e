"""HubSpot answers recorded by others (tests/contracts/hubspot/README.md), served byte for byte
through the sandbox to the real `hubspot-api-client` and ga4sync's connector."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ga4sync.connectors.hubspot import HubspotConnector, HubspotSettings
from ga4sync.connectors.hubspot_api import missing_scopes
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.model import TimeWindow
from ga4sync.core.secrets import SecretRef
from ga4sync.sandbox.hubspot import RecordedAnswer
from ga4sync.sandbox.runner import HUBSPOT_TOKEN, SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_hubspot import FAST, ROOMY, deal_rows, deals_engine

CONTRACTS = Path(__file__).parent / "contracts" / "hubspot"


def recorded(name: str) -> bytes:
    return (CONTRACTS / name).read_bytes()


@pytest.fixture
def hub(sandbox: SandboxEnvironment, monkeypatch: pytest.MonkeyPatch) -> SandboxEnvironment:
    sandbox.hubspot.limits = ROOMY
    monkeypatch.setenv("GA4SYNC_TEST_HUBSPOT_TOKEN", HUBSPOT_TOKEN)
    return sandbox


def test_a_recorded_secondly_429_on_search_is_waited_out(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    ids = [
        data.create(
            "deals", hub.clock.now() - timedelta(minutes=30 + i), {"dealstage": "closedwon"}
        )
        for i in range(3)
    ]
    hub.hubspot.replay(RecordedAnswer("/search", 429, recorded("429_secondly.json")))
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "ok", capture.error
    assert {r.record_id for r in deal_rows(engine)} == set(ids)
    assert hub.hubspot.counts["requests"] == capture.api_calls  # the 429 was counted, retried


def test_a_recorded_missing_scopes_403_names_the_scope_hubspot_asks_for(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    hub.hubspot.data.create(
        "deals", hub.clock.now() - timedelta(minutes=30), {"dealstage": "closedwon"}
    )
    headers = tuple(json.loads(recorded("403_missing_scopes.headers.json")).items())
    body = recorded("403_missing_scopes.json")
    hub.hubspot.replay(RecordedAnswer("/batch/read", 403, body, headers))
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    assert "403 MISSING_SCOPES; HubSpot asks for one of `contacts`" in (capture.error or "")
    assert "service key" in (capture.error or "")
    assert engine.store.get_watermark("hubspot_deals", "deals") is None  # nothing half-done
    assert deal_rows(engine) == []


def test_granular_scopes_are_read_from_every_place_hubspot_puts_them() -> None:
    body = json.loads(recorded("403_missing_scopes.json"))
    assert missing_scopes(body) == ["contacts"]
    body["errors"][0]["context"] = {"requiredGranularScopes": ["crm.objects.deals.read"]}
    body["context"] = {"requiredScopes": ["crm.schemas.deals.read"]}
    assert missing_scopes(body) == ["crm.schemas.deals.read", "crm.objects.deals.read"]


def test_a_recorded_expired_oauth_token_on_a_fixed_token_says_to_configure_oauth(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    hub.hubspot.replay(
        RecordedAnswer("/pipelines/deals", 401, recorded("401_expired_authentication.json"))
    )
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    error = capture.error or ""
    assert "401 EXPIRED_AUTHENTICATION: The OAuth token used to make this call expired" in error
    assert "configure `oauth:` (client_id, client_secret, refresh_token)" in error
    assert HUBSPOT_TOKEN not in error


def test_a_recorded_record_with_history_becomes_its_move(hub: SandboxEnvironment) -> None:
    """The record as HubSpot sent it, inside a batch-read answer: its one history entry is a
    move from nothing to `true` at the entry's own time, made in the CRM UI."""
    record = recorded("contact_with_history.json")
    modified = datetime(2022, 11, 7, 21, 54, 3, 954000, tzinfo=UTC)
    hub.hubspot.data.create("contacts", modified, {"is_verified": "true"}, record_id="1")
    envelope = (
        b'{"status":"COMPLETE","results":['
        + record
        + b'],"startedAt":"2022-11-07T21:54:05.000Z","completedAt":"2022-11-07T21:54:05.100Z"}'
    )
    hub.hubspot.replay(RecordedAnswer("/contacts/batch/read", 200, envelope))
    settings = HubspotSettings(
        name="hubspot_contacts",
        mapping="unused.yaml",
        host=hub.hubspot_server.url,
        access_token=SecretRef(env="GA4SYNC_TEST_HUBSPOT_TOKEN"),
        **FAST,
    )
    hs = HubspotConnector(settings, spec=FetchSpec("contacts", "is_verified", ("email",)))
    pages = list(hs.fetch_transitions(TimeWindow(start=modified - timedelta(days=1))))
    hs.close()
    moves = [t for p in pages for t in p.transitions]
    assert [(t.record_id, t.from_value, t.to_value, t.changed_at) for t in moves] == [
        ("1", None, "true", datetime(2022, 11, 7, 21, 54, 3, 930000, tzinfo=UTC))
    ]
    assert moves[0].source_ref == "contacts/1/is_verified@1667858043930"


def test_the_documented_daily_429_stops_the_run_as_quota_and_the_next_run_resumes(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """HubSpot's own example of a 429 (API usage details page): `policyName: DAILY` is the
    day's quota, which no retry helps; the run stops as `quota` with nothing half-done."""
    ids = [
        hub.hubspot.data.create(
            "deals", hub.clock.now() - timedelta(minutes=30 + i), {"dealstage": "closedwon"}
        )
        for i in range(3)
    ]
    hub.hubspot.replay(RecordedAnswer("/batch/read", 429, recorded("429_daily.json")))
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "quota", capture.error
    assert "daily API limit" in (capture.error or "")
    assert deal_rows(engine) == [] and engine.store.get_watermark("hubspot_deals", "deals") is None
    assert hub.hubspot.counts["requests"] == capture.api_calls  # refused once, never retried
    again = engine.run_once().captures[0]
    assert again.status == "ok" and {r.record_id for r in deal_rows(engine)} == set(ids)
