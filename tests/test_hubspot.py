"""HubSpot capture: real `hubspot-api-client` over HTTP to the sandbox, through the Engine.

The sandbox keeps HubSpot's 10,000-result search cap, its 429 bodies and headers and a search
index that lags writes; tests shrink only the time windows (never sleep for real limits).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.connectors.hubspot import HubspotConnector, HubspotSettings
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.model import StageTransition, Status, TimeWindow
from ga4sync.core.secrets import SecretRef
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.sandbox.hubspot import RateLimits
from ga4sync.sandbox.hubspot_data import Pipeline, Stage
from ga4sync.sandbox.runner import HUBSPOT_TOKEN, SandboxEnvironment
from ga4sync.state.readings import OutboxEntry

from tests.conftest import EngineFactory

FAST = {"search_rate": 1000, "search_backoff": "10ms", "burst_backoff": "20ms"}
"""Connector settings for tests: no pacing, short backoff (the sandbox windows are short too)."""
ROOMY = RateLimits(search_per_window=10_000, search_window=1.0, burst=10_000, burst_window=1.0)


@pytest.fixture
def hub(sandbox: SandboxEnvironment) -> SandboxEnvironment:
    sandbox.hubspot.limits = ROOMY
    return sandbox


def deals_engine(make_engine: EngineFactory, mapping: Path | None = None, **options: Any) -> Any:
    engine, _ = make_engine(
        salesforce=False,
        hubspot=[mapping or MAPPINGS_DIR / "hubspot_deals.yaml"],
        hubspot_options={**FAST, **options},
    )
    return engine


def connector(env: SandboxEnvironment, object_type: str = "deals", **settings: Any) -> Any:
    stage = "dealstage" if object_type == "deals" else "lifecyclestage"
    config = HubspotSettings(
        name=f"hubspot_{object_type}",
        mapping="unused.yaml",
        host=env.hubspot_server.url,
        access_token=SecretRef(env="GA4SYNC_TEST_HUBSPOT_TOKEN"),
        **{**FAST, **settings},
    )
    return HubspotConnector(config, spec=FetchSpec(object_type, stage, (stage, "amount")))


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GA4SYNC_TEST_HUBSPOT_TOKEN", HUBSPOT_TOKEN)


def ms(value: datetime) -> datetime:
    """HubSpot keeps milliseconds."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def deal_rows(engine: Any) -> list[OutboxEntry]:
    return [r for r in engine.store.list_outbox() if r.connector.startswith("hubspot_deals")]


# -- past the 10,000-result search cap ---------------------------------------------------------
def test_25000_deals_changed_in_one_window_are_all_read_past_the_search_cap(
    hub: SandboxEnvironment,
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    bulk_at = now - timedelta(hours=3)
    # A bulk job: 12,000 deals modified at the very same millisecond, then 13,000 spread out.
    bulk = [data.create("deals", bulk_at, {"dealstage": "qualifiedtobuy"}) for _ in range(12_000)]
    spread = [
        data.create("deals", bulk_at + timedelta(milliseconds=500 * (i + 1)), {"dealstage": "lead"})
        for i in range(13_000)
    ]
    hs = connector(hub)
    pages = list(hs.fetch_transitions(TimeWindow(start=now - timedelta(hours=4))))
    hs.close()
    transitions = [t for p in pages for t in p.transitions]
    ids = [t.record_id for t in transitions]
    assert len(ids) == 25_000 and set(ids) == set(bulk) | set(spread)
    marks = [p.watermark for p in pages if p.watermark]
    assert marks == sorted(marks)  # each page is safe to resume from
    assert marks[-1] == max(t.changed_at for t in transitions)
    # The bulk timestamp is finished on its own, by id, and split once more at the cap; the
    # spread records page by keyset, which never meets the cap.
    assert hs.search.splits == 2
    assert hub.hubspot.counts["429:SECONDLY"] == 0
    assert int(hs.usage.extra["search"]) == hub.hubspot.counts["search"]
    assert hs.usage.calls == hub.hubspot.counts["requests"]


def test_windows_past_the_cap_are_captured_once_through_the_engine(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """The same split on both state backends, scaled down: a cap of 100 instead of 10,000."""
    hub.hubspot.search_cap = 100
    data = hub.hubspot.data
    now = hub.clock.now()
    bulk_at = now - timedelta(hours=3)
    ids = [data.create("deals", bulk_at, {"dealstage": "closedwon"}) for _ in range(230)]
    ids += [
        data.create("deals", bulk_at + timedelta(seconds=25 * (i + 1)), {"dealstage": "closedwon"})
        for i in range(370)
    ]
    engine = deals_engine(make_engine, search_cap=100, page_size=40, batch_size=40)
    first = engine.run_once().captures[0]
    assert first.status == "ok", first.error
    assert first.captured == 600
    assert sorted(r.record_id for r in deal_rows(engine)) == sorted(ids)
    mark = engine.store.get_watermark("hubspot_deals", "deals")
    assert mark == ms(bulk_at) + timedelta(seconds=25 * 370)
    again = engine.run_once().captures[0]
    assert again.captured == 0 and 0 < again.duplicates < 30  # only the 10-minute overlap
    # pipelines, one search page, one batch read, one search of the unsettled last 5 minutes
    assert again.api_calls == 4


def test_search_refuses_paging_at_the_cap_like_hubspot(hub: SandboxEnvironment) -> None:
    from hubspot import HubSpot
    from hubspot.crm.objects import PublicObjectSearchRequest
    from hubspot.crm.objects.exceptions import ApiException

    client = HubSpot(access_token=HUBSPOT_TOKEN, host=hub.hubspot_server.url)
    with pytest.raises(ApiException) as caught:
        client.crm.objects.search_api.do_search(
            "deals", PublicObjectSearchRequest(limit=10, after="10000")
        )
    assert caught.value.status == 400
    assert '"category": "VALIDATION_ERROR"' in caught.value.body


# -- several moves between polls ---------------------------------------------------------------
def test_several_moves_between_polls_are_captured_in_order_with_their_times(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    rid = data.create(
        "deals",
        now - timedelta(hours=5),
        {"dealstage": "appointmentscheduled", "ga_client_id": "111.222", "amount": "900"},
    )
    engine = deals_engine(make_engine)
    first = engine.run_once()
    assert first.ok and first.captures[0].captured == 1
    moves = [
        ("qualifiedtobuy", now + timedelta(minutes=1, milliseconds=250)),
        ("contractsent", now + timedelta(minutes=2)),
        ("closedwon", now + timedelta(minutes=3, seconds=7)),
    ]
    for stage, at in moves:
        data.move("deals", rid, stage, at)
    hub.clock.advance(timedelta(minutes=9))  # past the last move plus the 5-minute search lag
    second = engine.run_once()
    assert second.ok and second.captures[0].captured == 3
    rows = deal_rows(engine)
    assert [(r.from_value, r.to_value) for r in rows] == [
        (None, "appointmentscheduled"),
        ("appointmentscheduled", "qualifiedtobuy"),
        ("qualifiedtobuy", "contractsent"),
        ("contractsent", "closedwon"),
    ]
    assert [r.changed_at.replace(tzinfo=UTC) for r in rows[1:]] == [ms(at) for _, at in moves]
    sent = {e["name"]: e for e in hub.ga4.events()}
    assert sent["purchase"]["params"]["transaction_id"] == rid
    assert sent["purchase"]["params"]["value"] == 900
    assert engine.run_once().captures[0].captured == 0  # the overlap re-reads, nothing new


# -- 429 storms ------------------------------------------------------------------------------
def test_429_storms_are_survived_and_counted(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [
        data.create("deals", now - timedelta(minutes=50 - i), {"dealstage": "closedwon"})
        for i in range(30)
    ]
    # Tiny windows: 2 searches per 50 ms, 3 other calls per 100 ms, plus a forced storm.
    hub.hubspot.limits = RateLimits(
        search_per_window=2, search_window=0.05, burst=3, burst_window=0.1
    )
    hub.hubspot.storm(5, "TEN_SECONDLY_ROLLING")
    engine = deals_engine(make_engine, page_size=5, batch_size=2)
    report = engine.run_once()
    capture = report.captures[0]
    assert capture.status == "ok", capture.error
    assert {r.record_id for r in deal_rows(engine)} == set(ids)
    refused = sum(v for k, v in hub.hubspot.counts.items() if k.startswith("429:"))
    assert refused >= 5
    assert capture.api_calls == hub.hubspot.counts["requests"]  # every attempt is counted


def test_daily_limit_stops_the_run_and_keeps_what_was_captured(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    for i in range(20):
        data.create("deals", now - timedelta(minutes=40 - i), {"dealstage": "closedwon"})
    engine = deals_engine(make_engine, page_size=5, batch_size=5)
    hub.hubspot.limits = RateLimits(
        search_per_window=1000, search_window=1.0, burst=1000, burst_window=1.0, daily=6
    )
    report = engine.run_once()
    capture = report.captures[0]
    assert capture.status == "quota"
    assert "daily API limit" in (capture.error or "")
    assert 0 < len(deal_rows(engine)) < 20
    mark = engine.store.get_watermark("hubspot_deals", "deals")
    assert mark is not None and mark < now - timedelta(minutes=21)
    hub.hubspot.limits = ROOMY
    assert engine.run_once().captures[0].status == "ok"
    assert len(deal_rows(engine)) == 20


# -- stage labels and ids ----------------------------------------------------------------------
RENEWALS = Pipeline(
    "renewals",
    "Renewals",
    [Stage("1001", "Negotiation"), Stage("1002", "Closed won", is_closed=True)],
)


def write_mapping(tmp_path: Path, to: str) -> Path:
    path = tmp_path / "deals_by_label.yaml"
    path.write_text(
        "object: deals\n"
        "stage_field: dealstage\n"
        "client_id_field: ga_client_id\n"
        "rules:\n"
        "  - name: won\n"
        f"    to: {to}\n"
        "    event: close_convert_lead\n"
    )
    return path


def test_label_in_two_pipelines_is_refused_naming_both(
    hub: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    hub.hubspot.data.add_pipeline("deals", RENEWALS)
    engine = deals_engine(make_engine, write_mapping(tmp_path, "Closed won"))
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    error = capture.error or ""
    assert "deals_by_label.yaml:6:5: rule 1" in error and ", to" in error
    assert "`Sales Pipeline` (id closedwon)" in error and "`Renewals` (id 1002)" in error
    assert "`Sales Pipeline/Closed won` or `Renewals/Closed won`" in error
    # `mappings validate` says so too, before a daemon ever runs the mapping.
    config = engine.config.path
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert result.exit_code == 1, result.output
    assert (
        'deals_by_label.yaml:6:5: rule 1 ("won"), to #1: stage label `Closed won` is in 2'
        in result.output
    )
    assert "`Renewals/Closed won` or `Sales Pipeline/Closed won`" in result.output


def test_stage_labels_qualified_labels_and_ids_all_match_the_stored_id(
    hub: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = hub.hubspot.data
    data.add_pipeline("deals", RENEWALS)
    now = hub.clock.now()
    renewal = data.create(
        "deals", now - timedelta(hours=1), {"dealstage": "1001", "pipeline": "renewals"}
    )
    data.move("deals", renewal, "1002", now - timedelta(minutes=30))
    other = data.create("deals", now - timedelta(hours=1), {"dealstage": "closedwon"})
    engine = deals_engine(make_engine, write_mapping(tmp_path, '"renewals/CLOSED WON"'))
    capture = engine.run_once().captures[0]
    assert capture.status == "ok", capture.error
    rows = {r.record_id: r for r in deal_rows(engine)}
    assert rows[renewal].to_value == "1002"
    assert rows[renewal].reason.startswith("no_client_id")  # the rule matched the id
    assert rows[other].reason.startswith("no_rule")
    engine2 = deals_engine(make_engine, write_mapping(tmp_path, "Negotiation"))
    assert engine2.run_once().captures[0].status == "ok"


def test_unknown_stage_is_a_warning_not_a_failure(
    hub: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = deals_engine(make_engine, write_mapping(tmp_path, "Closed Wun"))
    capture = engine.run_once().captures[0]
    assert capture.status == "ok"
    assert any(
        "stage `Closed Wun` is not among the dealstage values" in w for w in capture.warnings
    )


# -- contacts ------------------------------------------------------------------------------------
def test_contacts_lifecycle_and_lead_status_from_a_scenario(
    hub: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    scenario = tmp_path / "contacts.yaml"
    scenario.write_text(
        "hubspot:\n"
        "  contacts:\n"
        "    - email: ada@example.com\n"
        "      client_id: GA1.1.333.444\n"
        "      stages:\n"
        "        - {at: -3h, stage: lead}\n"
        "        - {at: -2h, stage: marketingqualifiedlead}\n"
        "        - {at: -1h, stage: other, properties: {hs_lead_status: BAD_TIMING}}\n"
        "    - email: gone@example.com\n"
        "      client_id: '555.666'\n"
        "      stages: [{at: -3h, stage: lead}]\n"
        "      archived_at: -2h\n"
    )
    hub.load_scenario(scenario)
    engine, _ = make_engine(
        salesforce=False,
        hubspot=[MAPPINGS_DIR / "hubspot_contacts.yaml"],
        hubspot_options=FAST,
    )
    report = engine.run_once()
    assert report.captures[0].status == "ok", report.captures[0].error
    # Each event carries the lifecycle stage of its own move (user property and param), so
    # the three go in separate requests; GA4 orders them by timestamp, and so does this test.
    events = sorted(hub.ga4.events(), key=lambda e: e["timestamp_micros"])
    assert [e["name"] for e in events] == ["generate_lead", "qualify_lead", "disqualify_lead"]
    assert events[1]["params"]["lead_status"] == "marketingqualifiedlead"
    assert events[2]["params"]["disqualified_lead_reason"] == "BAD_TIMING"
    hits = sorted(hub.ga4.hits, key=lambda h: h.body["events"][0]["timestamp_micros"])
    stages = [hit.body["user_properties"]["crm_lifecycle_stage"]["value"] for hit in hits]
    assert stages == ["lead", "marketingqualifiedlead", "other"]
    rows = engine.store.list_outbox()
    assert all(r.detected_by == "history" for r in rows) and len(rows) == 3


def test_transition_times_come_from_history_not_from_the_poll(hub: SandboxEnvironment) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    rid = data.create("deals", now - timedelta(hours=30), {"dealstage": "appointmentscheduled"})
    data.move("deals", rid, "qualifiedtobuy", now - timedelta(hours=20))
    data.move("deals", rid, "closedwon", now - timedelta(minutes=10))
    hs = connector(hub)
    # The window starts after the first two moves: only the last is a transition, and its
    # from-value is the history entry before it, not None.
    pages = list(hs.fetch_transitions(TimeWindow(start=now - timedelta(hours=1))))
    hs.close()
    found: list[StageTransition] = [t for p in pages for t in p.transitions]
    assert [(t.from_value, t.to_value) for t in found] == [("qualifiedtobuy", "closedwon")]
    assert found[0].changed_at == ms(now - timedelta(minutes=10))
    assert found[0].fields["amount"] is None


def test_a_bad_token_fails_the_run_without_showing_it(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    hub.hubspot.tokens = {"another-token"}
    hub.hubspot.data.create("deals", hub.clock.now() - timedelta(hours=1), {"dealstage": "x"})
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    assert "401 INVALID_AUTHENTICATION" in (capture.error or "")
    assert HUBSPOT_TOKEN not in (capture.error or "")
    assert engine.store.count_by_status().get(Status.PENDING, 0) == 0


def test_a_closed_window_finds_moves_of_records_modified_after_it(hub: SandboxEnvironment) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    rid = data.create("deals", now - timedelta(days=2), {"dealstage": "appointmentscheduled"})
    data.move("deals", rid, "contractsent", now - timedelta(hours=30))
    data.update("deals", rid, now - timedelta(hours=1), {"amount": "700"})  # modified since
    hs = connector(hub)
    window = TimeWindow(start=now - timedelta(hours=36), end=now - timedelta(hours=24))
    found = [t for p in hs.fetch_transitions(window) for t in p.transitions]
    hs.close()
    assert [(t.from_value, t.to_value) for t in found] == [("appointmentscheduled", "contractsent")]
    assert found[0].fields["amount"] == "700"  # the record as it is now


def test_object_lists_page_by_id_and_cap_history_pages_at_50(hub: SandboxEnvironment) -> None:
    from hubspot import HubSpot
    from hubspot.crm.objects.exceptions import ApiException

    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [data.create("deals", now, {"dealstage": "closedwon"}) for _ in range(120)]
    data.archive("deals", ids[5], now)
    client = HubSpot(access_token=HUBSPOT_TOKEN, host=hub.hubspot_server.url)
    seen = [d.id for d in client.crm.objects.get_all("deals", properties=["dealstage"])]
    assert seen == [i for i in ids if i != ids[5]]
    with pytest.raises(ApiException) as caught:
        client.crm.objects.basic_api.get_page("deals", limit=51, properties_with_history=["x"])
    assert caught.value.status == 400


def test_lead_status_by_label_resolves_to_its_internal_value(
    hub: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    rid = data.create(
        "contacts", now - timedelta(hours=2), {"hs_lead_status": "NEW", "ga_client_id": "7.8"}
    )
    data.update("contacts", rid, now - timedelta(hours=1), {"hs_lead_status": "BAD_TIMING"})
    mapping = tmp_path / "lead_status.yaml"
    mapping.write_text(
        "object: contacts\n"
        "stage_field: hs_lead_status\n"
        "client_id_field: ga_client_id\n"
        "rules:\n"
        "  - {name: bad timing, from: New, to: Bad Timing, event: disqualify_lead}\n"
    )
    engine, _ = make_engine(salesforce=False, hubspot=[mapping], hubspot_options=FAST)
    capture = engine.run_once().captures[0]
    assert capture.status == "ok", capture.error
    assert [e["name"] for e in hub.ga4.events()] == ["disqualify_lead"]
    assert hub.hubspot.counts["properties"] == 1  # the vocabulary: one call per run


def test_hubspot_config_errors_name_the_key_and_line(tmp_path: Path) -> None:
    from ga4sync.core.errors import ConfigError
    from ga4sync.pipeline.config import load_config

    path = tmp_path / "ga4sync.yaml"
    path.write_text(
        "ga4: {measurement_id: G-ABC1234, api_secret: {env: X}}\n"
        "connectors:\n"
        "  - name: hubspot_deals\n"
        "    type: hubspot\n"
        "    mapping: mappings/hubspot_deals.yaml\n"
        "    host: api.hubapi.com\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}:6:5: connectors[0].host: host must be a URL" in text
    path.write_text(path.read_text().replace("host: api.hubapi.com", "every: 5m"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "give exactly one of `access_token` (a service key or legacy private app token) or" in (
        str(caught.value)
    )


# -- what live accounts hand back ---------------------------------------------------------------
def test_a_record_modified_mid_paging_does_not_make_search_skip_another(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [
        data.create("deals", now - timedelta(minutes=50 - i), {"dealstage": "qualifiedtobuy"})
        for i in range(30)
    ]
    searches: list[int] = []

    def someone_edits_a_deal_already_read(req: Any, resp: Any) -> None:
        if req.path.endswith("/search") and resp.status == 200:
            searches.append(1)
            if len(searches) == 1:  # between page 1 and page 2 of the first run
                data.move("deals", ids[0], "closedwon", hub.clock.now())

    hub.hubspot.app.after.append(someone_edits_a_deal_already_read)
    engine = deals_engine(make_engine, page_size=5, batch_size=5)
    assert engine.run_once().captures[0].status == "ok"
    # With offsets, deal 6 slid onto page 1 when deal 1 left it, and was never read.
    rows = deal_rows(engine)
    assert {r.record_id for r in rows if r.to_value == "qualifiedtobuy"} == set(ids)
    assert [r.record_id for r in rows if r.to_value == "closedwon"] == [ids[0]]


def test_a_stage_cleared_and_set_again_is_a_new_move(hub: SandboxEnvironment) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    t0 = now - timedelta(minutes=30)
    deal = data.create("deals", t0, {"dealstage": "closedwon"})
    data.update("deals", deal, t0 + timedelta(minutes=1), {"dealstage": ""})
    data.update("deals", deal, t0 + timedelta(minutes=2), {"dealstage": "closedwon"})
    hs = connector(hub)
    pages = list(hs.fetch_transitions(TimeWindow(start=now - timedelta(hours=1))))
    hs.close()
    moves = [(t.from_value, t.to_value, t.changed_at) for p in pages for t in p.transitions]
    assert moves == [
        (None, "closedwon", ms(t0)),
        (None, "closedwon", ms(t0 + timedelta(minutes=2))),
    ]


def test_malformed_records_are_invalid_and_the_rest_of_the_page_goes_on(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [
        data.create("deals", now - timedelta(minutes=30 - i), {"dealstage": "closedwon"})
        for i in range(4)
    ]
    bad_time, no_id = ids[1], ids[2]

    def damage(req: Any, resp: Any) -> None:
        """What a broken proxy or an API change could hand back, on the real wire."""
        body = json.loads(resp.body or b"{}")
        if req.path.endswith("/search"):
            for r in body.get("results", []):
                if r["id"] == no_id:
                    del r["id"]
        elif req.path.endswith("/batch/read"):
            for r in body.get("results", []):
                if r["id"] == bad_time:
                    r["propertiesWithHistory"]["dealstage"][0]["timestamp"] = "yesterday"
        resp.body = json.dumps(body).encode()

    hub.hubspot.app.after.append(damage)
    engine = deals_engine(make_engine)
    capture = engine.run_once().captures[0]
    assert capture.status == "ok" and capture.rejected == 2
    rows = deal_rows(engine)
    assert sorted(r.reason for r in rows if r.status == "invalid") == [
        f"malformed CRM record deals/{bad_time}: a dealstage history entry has no valid timestamp",
        "malformed CRM record deals/?: search result has no id",
    ]
    assert {r.record_id for r in rows if r.status != "invalid"} == {ids[0], ids[3]}


def test_a_proxy_error_page_is_named_not_dumped(
    hub: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = hub.hubspot.data
    data.create("deals", hub.clock.now() - timedelta(minutes=5), {"dealstage": "closedwon"})

    def gateway(req: Any, resp: Any) -> None:
        if req.path.endswith("/search"):
            resp.status, resp.headers = 502, {"Content-Type": "text/html"}
            resp.body = b"<html><head><title>502 Bad Gateway</title></head><body></body></html>"

    hub.hubspot.app.after.append(gateway)
    engine = deals_engine(make_engine, max_attempts=2)
    capture = engine.run_once().captures[0]
    assert capture.status == "failed"
    assert "an HTML page (502 Bad Gateway)" in (capture.error or "")
    assert "<html" not in (capture.error or "")
    assert engine.store.get_watermark("hubspot_deals", "deals") is None
