"""HubSpot auth as it is: OAuth access tokens expire after 30 minutes and are renewed from the
refresh token (before expiry, and after a 401); refusals say what to fix, never the secrets."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ga4sync.connectors.hubspot import HubspotConnector, HubspotSettings
from ga4sync.connectors.hubspot_auth import OAuthClient, RefreshingToken
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.model import TimeWindow
from ga4sync.sandbox.http import Request, Response
from ga4sync.sandbox.hubspot_auth import OAuthApp
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_hubspot import FAST, ROOMY, deal_rows, deals_engine

CONTRACTS = Path(__file__).parent / "contracts" / "hubspot"
APP = OAuthApp()
OAUTH = {
    "access_token": None,
    "oauth": {
        "client_id": {"env": "TEST_HS_CLIENT_ID"},
        "client_secret": {"env": "TEST_HS_CLIENT_SECRET"},
        "refresh_token": {"env": "TEST_HS_REFRESH_TOKEN"},
    },
}


@pytest.fixture
def hub(sandbox: SandboxEnvironment, monkeypatch: pytest.MonkeyPatch) -> SandboxEnvironment:
    sandbox.hubspot.limits = ROOMY
    monkeypatch.setenv("TEST_HS_CLIENT_ID", APP.client_id)
    monkeypatch.setenv("TEST_HS_CLIENT_SECRET", APP.client_secret)
    monkeypatch.setenv("TEST_HS_REFRESH_TOKEN", APP.refresh_token)
    return sandbox


def secrets_seen(hub: SandboxEnvironment) -> list[str]:
    return [APP.client_secret, APP.refresh_token, *hub.hubspot.oauth.issued]


def expire_the_token_after_the_first_search(hub: SandboxEnvironment) -> None:
    """31 minutes pass on HubSpot's clock right after the first search: the 30-minute access
    token expires mid-read, so the next call is refused 401 and the token is renewed."""
    searches: list[int] = []

    def thirty_one_minutes_pass(req: Request, resp: Response) -> None:
        if req.path.endswith("/search"):
            searches.append(1)
            if len(searches) == 1:
                hub.clock.advance(timedelta(minutes=31))

    hub.hubspot.app.after.append(thirty_one_minutes_pass)


def test_an_oauth_token_that_expires_mid_run_is_renewed_and_the_run_goes_on(
    hub: SandboxEnvironment, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    data = hub.hubspot.data
    ids = [
        data.create(
            "deals", hub.clock.now() - timedelta(minutes=40 - i), {"dealstage": "closedwon"}
        )
        for i in range(12)
    ]
    expire_the_token_after_the_first_search(hub)
    caplog.set_level(logging.DEBUG)
    engine = deals_engine(make_engine, page_size=4, batch_size=4, **OAUTH)
    capture = engine.run_once().captures[0]
    assert capture.status == "ok", capture.error
    assert {r.record_id for r in deal_rows(engine)} == set(ids)
    assert hub.hubspot.counts["401:expired"] == 1  # HubSpot refused once, ga4sync renewed
    assert hub.hubspot.oauth.refreshes == 2
    assert hub.hubspot.counts["oauth_token"] == 2
    for secret in secrets_seen(hub):
        assert secret not in caplog.text


def test_token_requests_are_counted_apart_from_the_api_calls(hub: SandboxEnvironment) -> None:
    """HubSpot limits API calls made with a token, not the OAuth requests that get one
    (docs/hubspot.md, "Rate limits"): `api_calls` stays what the limits see, and the token
    requests (the first one and a renewal after the token expired mid-read) have their own
    figure."""
    data = hub.hubspot.data
    for i in range(8):
        data.create("deals", hub.clock.now() - timedelta(minutes=40 - i), {"dealstage": "x"})
    expire_the_token_after_the_first_search(hub)
    settings = HubspotSettings.model_validate(
        {"name": "hs", "mapping": "m.yaml", "host": hub.hubspot_server.url, "page_size": 4,
         **FAST, **OAUTH}
    )  # fmt: skip
    hs = HubspotConnector(settings, spec=FetchSpec("deals", "dealstage", ("dealstage",)))
    try:
        start = hub.clock.now() - timedelta(hours=1)
        pages = list(hs.fetch_transitions(TimeWindow(start=start)))
    finally:
        hs.close()
    assert sum(len(p.transitions) for p in pages) == 8
    counts = hub.hubspot.counts
    assert counts["oauth_token"] == 2 and counts["401:expired"] == 1
    assert hs.usage.extra["token_calls"] == "2"
    # Every CRM request, the one refused 401 included; no token request among them.
    assert hs.usage.calls == counts["requests"] + counts["401:expired"]


def test_a_token_is_renewed_five_minutes_before_it_expires(hub: SandboxEnvironment) -> None:
    now = [1000.0]
    token = RefreshingToken(
        OAuthClient(
            APP.client_id,
            APP.client_secret,
            APP.refresh_token,
            f"{hub.hubspot_server.url}/oauth/v1/token",
        ),
        monotonic=lambda: now[0],
    )
    first = token.current()
    now[0] += 1499  # 1800 s lifetime, renewed with 300 s to spare
    assert token.current() == first
    now[0] += 2
    second = token.current()
    assert second != first and hub.hubspot.oauth.refreshes == 2
    token.close()


def test_a_revoked_refresh_token_fails_the_run_naming_the_fix_not_the_secret(
    hub: SandboxEnvironment, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HS_REFRESH_TOKEN", "revoked-refresh-token-4e1f")
    hub.hubspot.data.create("deals", hub.clock.now() - timedelta(minutes=9), {"dealstage": "x"})
    engine = deals_engine(make_engine, **OAUTH)
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    error = capture.error or ""
    assert "HubSpot refused to renew the OAuth access token (400 BAD_REFRESH_TOKEN:" in error
    assert "install the app again and store the new refresh token" in error
    for secret in ("revoked-refresh-token-4e1f", APP.client_secret):
        assert secret not in error
    assert deal_rows(engine) == []


def test_the_sandbox_refuses_a_refresh_token_with_hubspots_recorded_body(
    hub: SandboxEnvironment,
) -> None:
    import requests

    answer = requests.post(
        f"{hub.hubspot_server.url}/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": APP.client_id,
            "client_secret": APP.client_secret,
            "refresh_token": "nope",
        },
        timeout=30,
    )
    recorded: Any = json.loads((CONTRACTS / "400_bad_refresh_token.json").read_bytes())
    assert answer.status_code == 400 and answer.json() == recorded


def test_config_takes_either_a_token_or_oauth_not_both(tmp_path: Path) -> None:
    from ga4sync.core.errors import ConfigError
    from ga4sync.pipeline.config import load_config

    path = tmp_path / "ga4sync.yaml"
    path.write_text(
        "ga4: {measurement_id: G-ABC1234, api_secret: {env: X}}\n"
        "connectors:\n"
        "  - name: hubspot_deals\n"
        "    type: hubspot\n"
        "    mapping: mappings/hubspot_deals.yaml\n"
        "    access_token: {env: HUBSPOT_ACCESS_TOKEN}\n"
        "    oauth:\n"
        "      client_id: {env: A}\n"
        "      client_secret: {env: B}\n"
        "      refresh_token: {file: secrets/refresh}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "give exactly one of `access_token`" in str(caught.value)


def test_a_token_url_with_a_password_in_it_is_refused_at_its_line(tmp_path: Path) -> None:
    from ga4sync.core.errors import ConfigError
    from ga4sync.pipeline.config import load_config

    path = tmp_path / "ga4sync.yaml"
    path.write_text(
        "ga4: {measurement_id: G-ABC1234, api_secret: {env: X}}\n"
        "connectors:\n"
        "  - name: hubspot_deals\n"
        "    type: hubspot\n"
        "    mapping: mappings/hubspot_deals.yaml\n"
        "    oauth:\n"
        "      client_id: {env: A}\n"
        "      client_secret: {env: B}\n"
        "      refresh_token: {env: C}\n"
        "      token_url: https://me:hunter22@api.hubapi.com/oauth/v1/token\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}:10:7: connectors[0].oauth.token_url: must not hold a user name" in text
    assert "hunter22" not in text
