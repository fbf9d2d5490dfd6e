"""Salesforce capture end to end: real simple-salesforce over HTTPS, Engine, both state backends.

Each test moves records in the sandbox org between polls and checks the outbox: every stage move
once, in order, with the time Salesforce recorded in its history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ga4sync.connectors.salesforce import _tracking_seen, _visibility_seen
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.ops.metrics import DaemonMetrics
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.sandbox.salesforce import PROXY_BAD_GATEWAY, SERVER_UNAVAILABLE, Fault
from ga4sync.state.store import StateStore

from tests.conftest import EngineFactory


@pytest.fixture(autouse=True)
def _fresh_tracking_answers() -> None:
    """Each test's org is new: no FieldDefinition answer carried over from another sandbox
    that happened to use the same port."""
    _tracking_seen.clear()
    _visibility_seen.clear()


def _now(sandbox: SandboxEnvironment) -> datetime:
    """Sandbox time to the second: Salesforce sends history times without sub-seconds."""
    return sandbox.clock.now().replace(microsecond=0)


def _moves(store: StateStore, record_id: str | None = None) -> list[tuple[str, Any, str, Any]]:
    rows = store.list_outbox()
    return [
        (r.record_id, r.from_value, r.to_value, r.changed_at)
        for r in rows
        if record_id is None or r.record_id == record_id
    ]


def _at(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _times(store: StateStore, record_id: str) -> list[tuple[Any, str, datetime]]:
    return [(f, t, _at(c)) for _, f, t, c in _moves(store, record_id)]


def test_every_move_once_in_order_with_history_time_across_many_polls(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    t0 = _now(sandbox) - timedelta(hours=2)
    a = data.create_opportunity(t0, stage="Prospecting", Amount=100.0, GA_Client_ID__c="1.2")
    b = data.create_opportunity(t0, stage="Prospecting", Amount=50.0, GA_Client_ID__c="3.4")
    d = data.create_opportunity(t0, stage="Prospecting", Amount=70.0, GA_Client_ID__c="5.6")
    engine, _ = make_engine(overlap="30m")
    assert engine.run_once().ok

    # Between two polls: A moves three times (Won -> Lost -> Won), an amount-only edit writes
    # a history row that is not a move, B moves and is deleted, D moves (deleted later).
    base = _now(sandbox) - timedelta(minutes=10)
    data.move_opportunity(a, "Closed Won", base + timedelta(seconds=1))
    data.edit_opportunity(a, base + timedelta(seconds=2), Amount=120.0)
    data.move_opportunity(a, "Closed Lost", base + timedelta(seconds=3))
    data.move_opportunity(a, "Closed Won", base + timedelta(seconds=4))
    data.move_opportunity(b, "Negotiation/Review", base + timedelta(seconds=5))
    data.delete_opportunity(b, base + timedelta(seconds=6))
    data.move_opportunity(d, "Negotiation/Review", base + timedelta(seconds=7))
    second = engine.run_once()
    assert second.ok and second.captures[0].captured == 4

    # D is deleted after its move was captured; the stage is renamed, which rewrites the
    # stored values and history; C then moves into the renamed stage.
    data.delete_opportunity(d, base + timedelta(seconds=8))
    data.rename_stage("Negotiation/Review", "Negotiation")
    c = data.create_opportunity(
        base + timedelta(seconds=9), stage="Prospecting", GA_Client_ID__c="7.8"
    )
    data.move_opportunity(c, "Negotiation", base + timedelta(seconds=10))
    for _ in range(3):  # quiet polls re-read the overlap and find nothing new
        engine.run_once()

    store = engine.store
    assert _times(store, a) == [
        (None, "Prospecting", t0),
        ("Prospecting", "Closed Won", base + timedelta(seconds=1)),
        ("Closed Won", "Closed Lost", base + timedelta(seconds=3)),
        ("Closed Lost", "Closed Won", base + timedelta(seconds=4)),
    ]
    assert [m[2] for m in _moves(store, b)] == ["Prospecting"]  # moved then deleted: gone
    assert [(m[1], m[2]) for m in _moves(store, d)] == [
        (None, "Prospecting"),
        ("Prospecting", "Negotiation/Review"),
    ]
    assert [(m[1], m[2]) for m in _moves(store, c)] == [
        (None, "Prospecting"),
        ("Prospecting", "Negotiation"),
    ]
    purchases = [e for e in sandbox.ga4.events() if e["name"] == "purchase"]
    assert [e["params"]["transaction_id"] for e in purchases] == [a]  # once per record
    runs = store.last_runs()
    assert all(r.api_calls >= 1 for r in runs)
    assert runs[0].api_limit == sandbox.salesforce.daily_limit


def test_quiet_poll_costs_one_call(sandbox: SandboxEnvironment, make_engine: EngineFactory) -> None:
    data = sandbox.salesforce.data
    t0 = _now(sandbox) - timedelta(hours=1)
    for i in range(30):
        oid = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c=f"{i}.1")
        data.move_opportunity(oid, "Qualification", t0 + timedelta(minutes=1, seconds=i))
    engine, _ = make_engine()
    first = engine.capture("salesforce")
    assert first.captured == 60
    # One history page, one "stage before the window" batch, one records batch, and whether
    # the user sees every opportunity (Opportunity sharing is Public Read/Write: one call).
    assert first.api_calls == 4
    before = sandbox.salesforce.data_requests()
    quiet = engine.capture("salesforce")
    assert quiet.captured == 0 and quiet.api_calls == 1
    assert sandbox.salesforce.data_requests() - before == 1
    assert quiet.api_remaining == sandbox.salesforce.daily_limit - sandbox.salesforce.api_used
    metrics = DaemonMetrics()
    metrics.record_capture(quiet, finished_at=datetime.now(UTC))
    exposed = metrics.render().decode()
    assert f'ga4sync_crm_api_remaining{{connector="salesforce"}} {quiet.api_remaining}.0' in exposed


def _many_moves(sandbox: SandboxEnvironment, count: int) -> list[str]:
    data = sandbox.salesforce.data
    created = _now(sandbox) - timedelta(hours=100)  # before the first window
    moved = _now(sandbox) - timedelta(hours=1)
    ids = []
    for i in range(count):
        oid = data.create_opportunity(created, stage="Prospecting", GA_Client_ID__c=f"{i}.9")
        data.move_opportunity(oid, "Qualification", moved + timedelta(seconds=i))
        ids.append(oid)
    return ids


def test_limit_exhausted_mid_run_then_resumed(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    ids = _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options={"page_size": 200})
    # Page 1 costs 3 calls (history page, stage-before batch, records batch); the 5th call,
    # inside page 2, is refused with REQUEST_LIMIT_EXCEEDED.
    sandbox.salesforce.allow_calls(4)
    stopped = engine.capture("salesforce")
    assert stopped.status == "quota"
    assert "REQUEST_LIMIT_EXCEEDED" in (stopped.error or "")
    assert stopped.captured == 200
    kept = engine.store.list_outbox()
    assert len(kept) == 200 and {r.record_id for r in kept} <= set(ids)
    mark = engine.store.get_watermark("salesforce", "Opportunity")
    assert mark == max(_at(r.changed_at) for r in kept)
    run = engine.store.last_runs()[0]
    assert run.status == "quota" and run.api_calls == 5

    sandbox.salesforce.allow_calls(1000)
    resumed = engine.capture("salesforce")
    assert resumed.status == "ok"
    rows = engine.store.list_outbox()
    assert len(rows) == 450 and len({r.key for r in rows}) == 450
    assert {r.record_id for r in rows} == set(ids)
    assert all(r.from_value == "Prospecting" for r in rows)


def test_floor_of_remaining_calls_stops_cleanly(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options={"page_size": 200, "min_remaining_calls": 100})
    sandbox.salesforce.allow_calls(104)  # after page 1's three calls, 101 remain; one more
    stopped = engine.capture("salesforce")
    assert stopped.status == "quota" and "min_remaining_calls=100" in (stopped.error or "")
    assert stopped.api_remaining == 100
    assert len(engine.store.list_outbox()) == 200
    sandbox.salesforce.allow_calls(1000)
    assert engine.capture("salesforce").status == "ok"
    assert len(engine.store.list_outbox()) == 450


def test_session_expiry_mid_run_logs_in_again_and_continues(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    creds = sandbox.salesforce.credentials
    secrets = sandbox.workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "sf_password").write_text(creds.password)
    (secrets / "sf_token").write_text(creds.security_token)
    ids = _many_moves(sandbox, 450)
    engine, _ = make_engine(
        salesforce_options={
            "page_size": 200,
            "login_url": f"{sandbox.sf_server.url}/login",
            "auth": {
                "method": "password",
                "username": creds.username,
                "password": {"file": "secrets/sf_password"},
                "security_token": {"file": "secrets/sf_token"},
            },
        }
    )
    pages: list[int] = []

    def expire_after_first_page(report: Any) -> None:
        pages.append(report.captured)
        if len(pages) == 1:
            sandbox.salesforce.expire_sessions()

    report = engine.capture("salesforce", on_page=expire_after_first_page)
    assert report.status == "ok", report.error
    assert creds.logins == ["soap", "soap"]
    assert pages == [200, 400, 450]
    assert {r.record_id for r in engine.store.list_outbox()} == set(ids)
    # The refused call and its retry both count: the run reports what the org counted.
    assert report.api_calls == sandbox.salesforce.data_requests()


def test_expired_session_id_says_how_to_fix(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    _many_moves(sandbox, 3)
    engine, _ = make_engine()
    sandbox.salesforce.expire_sessions()
    report = engine.capture("salesforce")
    assert report.status == "failed"
    assert "INVALID_SESSION_ID" in (report.error or "")
    assert "cannot be renewed" in (report.error or "")


def test_unknown_field_names_the_mapping_line(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    text = (MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text()
    text = text.replace("lead_source: {field: LeadSource", "lead_source: {field: Lead_Sourse__c")
    mapping = tmp_path / "opportunity.yaml"
    mapping.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "Lead_Sourse__c" in ln)
    _many_moves(sandbox, 2)
    engine, _ = make_engine(mapping=mapping)
    report = engine.capture("salesforce")
    assert report.status == "failed"
    assert f"{mapping}:{line}:" in (report.error or "")
    assert 'rule 1 ("qualified"), params.lead_source.field' in (report.error or "")
    assert "no field `Lead_Sourse__c` on Opportunity in this org (INVALID_FIELD)" in (
        report.error or ""
    )
    assert engine.store.list_outbox() == []


LEAD_MAPPING = """\
object: Lead
stage_field: Status
detection: history
history_object: LeadHistory
client_id_field: GA_Client_ID__c
rules:
  - {name: new, to: Open - Not Contacted, event: generate_lead}
  - {name: qualified, to: Qualified, event: qualify_lead}
  - {name: converted, to: Converted, event: close_convert_lead}
  - {name: other, to: "*", event: lead_status_change, once_per_record: false}
"""


def test_lead_status_history_and_conversion(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    mapping = tmp_path / "lead.yaml"
    mapping.write_text(LEAD_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    lead = data.create_lead(t0, status="Open - Not Contacted", GA_Client_ID__c="11.22")
    untracked = data.create_lead(t0 - timedelta(hours=100), status="Working - Contacted")
    engine, _ = make_engine(mapping=mapping)
    first = engine.capture("salesforce")
    # leads, their history, whether Lead.Status history is tracked and whether the user sees
    # every lead (each asked once a day)
    assert first.status == "ok" and first.api_calls == 4
    assert first.warnings == []
    quiet = engine.capture("salesforce")
    assert quiet.api_calls == 1

    t1 = _now(sandbox) - timedelta(minutes=5)
    data.move_lead(lead, "Working - Contacted", t1)
    data.move_lead(lead, "Qualified", t1 + timedelta(seconds=1))
    data.update_record("Lead", untracked, t1, Email="x@example.com")  # not a status move
    data.convert_lead(lead, t1 + timedelta(seconds=2))
    assert engine.capture("salesforce").status == "ok"
    engine.capture("salesforce")

    midnight = datetime.combine((t1 + timedelta(seconds=2)).date(), datetime.min.time(), UTC)
    assert sorted(_times(engine.store, lead), key=lambda m: m[2]) == sorted(
        [
            (None, "Open - Not Contacted", t0),
            ("Open - Not Contacted", "Working - Contacted", t1),
            ("Working - Contacted", "Qualified", t1 + timedelta(seconds=1)),
            ("Qualified", "Closed - Converted", t1 + timedelta(seconds=2)),
            ("Closed - Converted", "Converted", midnight),
        ],
        key=lambda m: m[2],
    )
    assert _moves(engine.store, untracked) == []


SNAPSHOT_MAPPING = """\
object: Opportunity
stage_field: StageName
detection: snapshot
client_id_field: GA_Client_ID__c
rules:
  - {name: won, to: Closed Won, event: purchase, params: {transaction_id: {field: Id}}}
  - {name: other, to: "*", event: stage_change, once_per_record: false}
"""


def test_snapshot_diff_sees_last_stage_and_warns(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    mapping = tmp_path / "snap.yaml"
    mapping.write_text(SNAPSHOT_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    new = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c="1.1")
    old = data.create_opportunity(t0 - timedelta(days=30), stage="Closed Won")
    data.edit_opportunity(old, t0, Name="renamed")  # an old won deal, merely edited
    engine, _ = make_engine(mapping=mapping)
    first = engine.capture("salesforce")
    assert first.status == "ok" and first.api_calls == 2  # the records, sharing (once a day)
    assert any("intermediate moves can be missed" in w for w in first.warnings)
    assert engine.store.last_runs()[0].warnings
    t1 = _now(sandbox) - timedelta(minutes=5)
    data.move_opportunity(new, "Qualification", t1)
    data.move_opportunity(new, "Closed Won", t1 + timedelta(seconds=1))
    data.move_opportunity(old, "Closed Lost", t1 + timedelta(seconds=2))
    engine.capture("salesforce")
    engine.capture("salesforce")
    assert _times(engine.store, new) == [
        (None, "Prospecting", t0),
        ("Prospecting", "Closed Won", t1 + timedelta(seconds=1)),  # Qualification unseen
    ]
    assert _times(engine.store, old) == [("Closed Won", "Closed Lost", t1 + timedelta(seconds=2))]
    assert all(r.detected_by == "snapshot" for r in engine.store.list_outbox())


def test_custom_object_field_history(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    data.define_object("Project__c", ["Stage__c", "GA_Client_ID__c"], tracked=("Stage__c",))
    mapping = tmp_path / "project.yaml"
    mapping.write_text(
        "object: Project__c\nstage_field: Stage__c\ndetection: history\n"
        "client_id_field: GA_Client_ID__c\n"
        "rules:\n  - {to: Live, event: project_live}\n"
    )
    t0 = _now(sandbox) - timedelta(hours=1)
    pid = data.create_record("Project__c", t0, Stage__c="Draft", GA_Client_ID__c="9.9")
    data.update_record("Project__c", pid, t0 + timedelta(minutes=1), Stage__c="Review")
    data.update_record("Project__c", pid, t0 + timedelta(minutes=2), Stage__c="Live")
    engine, _ = make_engine(mapping=mapping)
    assert engine.run_once().ok
    engine.run_once()
    assert _times(engine.store, pid) == [
        (None, "Draft", t0),
        ("Draft", "Review", t0 + timedelta(minutes=1)),
        ("Review", "Live", t0 + timedelta(minutes=2)),
    ]
    assert [e["name"] for e in sandbox.ga4.events()] == ["project_live"]


def test_missing_history_object_names_the_mapping_line(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    sandbox.salesforce.data.define_object("Project__c", ["Stage__c", "GA_Client_ID__c"])
    mapping = tmp_path / "project.yaml"
    mapping.write_text(
        "object: Project__c\nstage_field: Stage__c\ndetection: history\n"
        "client_id_field: GA_Client_ID__c\nrules:\n  - {to: Live, event: project_live}\n"
    )
    engine, _ = make_engine(mapping=mapping)
    report = engine.capture("salesforce")
    assert report.status == "failed"
    assert f"{mapping}:3:1: detection: Salesforce has no history object `Project__History`" in (
        report.error or ""
    )
    assert "detection: snapshot" in (report.error or "")


def test_lead_snapshot_mode_sees_status_and_conversion(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    data.tracked.pop("Lead")  # Status history tracking off: only snapshot diff can see moves
    mapping = tmp_path / "lead.yaml"
    mapping.write_text(
        LEAD_MAPPING.replace(
            "detection: history\nhistory_object: LeadHistory\n", "detection: snapshot\n"
        )
    )
    # The move must fall inside the poll's overlap (10 min) and on the same UTC day as the
    # creation, whatever the time of day the suite runs at (conversion is timed at midnight).
    t1 = _now(sandbox) - timedelta(minutes=5)
    day = datetime.combine(t1.date(), datetime.min.time(), UTC)
    if t1 - day < timedelta(seconds=2):
        t1, day = day - timedelta(seconds=1), day - timedelta(days=1)
    t0 = max(t1 - timedelta(hours=1), day + timedelta(seconds=1))
    lead = data.create_lead(t0, status="Open - Not Contacted", GA_Client_ID__c="1.5")
    engine, _ = make_engine(mapping=mapping)
    assert engine.capture("salesforce").status == "ok"
    data.move_lead(lead, "Working - Contacted", t1)
    data.convert_lead(lead, t1 + timedelta(seconds=1))
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.api_calls == 1
    midnight = datetime.combine(t1.date(), datetime.min.time(), UTC)
    assert sorted(_times(engine.store, lead), key=lambda m: m[2]) == [
        ("Closed - Converted", "Converted", midnight),
        (None, "Open - Not Contacted", t0),
        ("Open - Not Contacted", "Closed - Converted", t1 + timedelta(seconds=1)),
    ]


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (SERVER_UNAVAILABLE, "Salesforce error 503: SERVER_UNAVAILABLE"),
        (PROXY_BAD_GATEWAY, "an HTML page (502 Bad Gateway)"),
    ],
)
def test_a_failure_mid_paging_keeps_read_pages_and_the_next_run_resumes(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, fault: Fault, says: str
) -> None:
    ids = _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options={"page_size": 200})
    # Page 1 costs 3 calls (history page, stage-before batch, records batch); the 4th, the
    # queryMore for page 2, meets the fault.
    sandbox.salesforce.fail(fault, after=3)
    stopped = engine.capture("salesforce")
    assert stopped.status == "failed" and says in (stopped.error or "")
    assert "<html" not in (stopped.error or "")
    kept = engine.store.list_outbox()
    assert stopped.captured == len(kept) == 200
    mark = engine.store.get_watermark("salesforce", "Opportunity")
    assert mark == max(_at(r.changed_at) for r in kept)  # not past the unread pages

    resumed = engine.capture("salesforce")
    assert resumed.status == "ok"
    rows = engine.store.list_outbox()
    assert len(rows) == 450 and len({r.key for r in rows}) == 450
    assert {r.record_id for r in rows} == set(ids)


def test_a_silent_server_is_cut_off_by_the_timeout(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    oid = data.create_opportunity(_now(sandbox) - timedelta(hours=1), stage="Prospecting")
    engine, _ = make_engine(salesforce_options={"timeout": "1s"})
    sandbox.salesforce.fail(SERVER_UNAVAILABLE, stall=5)
    stopped = engine.capture("salesforce")
    assert stopped.status == "failed"
    assert "did not answer within 1 s" in (stopped.error or "")
    assert engine.store.get_watermark("salesforce", "Opportunity") is None
    assert engine.capture("salesforce").status == "ok"
    assert [m[0] for m in _moves(engine.store)] == [oid]


def test_two_moves_in_the_same_second_keep_salesforce_order(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    data = sandbox.salesforce.data
    t0 = _now(sandbox) - timedelta(hours=1)
    oid = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c="1.1")
    engine, _ = make_engine()
    assert engine.capture("salesforce").status == "ok"
    # A flow moves the deal twice inside one transaction: both rows share CreatedDate and
    # only their Ids (ORDER BY CreatedDate, Id) tell which came first.
    t1 = _now(sandbox) - timedelta(minutes=5)
    data.move_opportunity(oid, "Qualification", t1)
    data.move_opportunity(oid, "Closed Won", t1)
    assert engine.capture("salesforce").captured == 2
    assert engine.capture("salesforce").captured == 0
    # The outbox lists same-time rows in key order; the from/to chain shows the real order.
    assert set(_times(engine.store, oid)) == {
        (None, "Prospecting", t0),
        ("Prospecting", "Qualification", t1),
        ("Qualification", "Closed Won", t1),
    }


PROJECT_MAPPING = (
    "object: Project__c\nstage_field: Stage__c\ndetection: history\n"
    "client_id_field: GA_Client_ID__c\n"
    "rules:\n  - {to: Live, event: project_live}\n"
)


def test_a_lookup_stage_field_writes_two_history_rows_but_moves_once(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    data.define_object("Project__c", ["Stage__c", "GA_Client_ID__c"], tracked=("Stage__c",))
    draft, live = "a0B000000000001AAA", "a0B000000000002AAA"
    data.lookup_names[("Project__c", "Stage__c")] = {draft: "Draft", live: "Live"}
    mapping = tmp_path / "project.yaml"
    mapping.write_text(PROJECT_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    pid = data.create_record("Project__c", t0, Stage__c=draft, GA_Client_ID__c="9.9")
    data.update_record("Project__c", pid, t0 + timedelta(minutes=1), Stage__c=live)
    history = data.objects["Project__History"].values()
    assert sorted(r["DataType"] for r in history if r["Field"] == "Stage__c") == [
        "EntityId",
        "Text",
    ]
    engine, _ = make_engine(mapping=mapping)
    assert engine.capture("salesforce").status == "ok"
    assert _times(engine.store, pid) == [
        (None, "Draft", t0),
        ("Draft", "Live", t0 + timedelta(minutes=1)),
    ]


def test_malformed_history_rows_are_recorded_as_invalid_and_the_page_goes_on(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    data.define_object("Project__c", ["Stage__c", "GA_Client_ID__c"], tracked=("Stage__c",))
    mapping = tmp_path / "project.yaml"
    mapping.write_text(PROJECT_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    pid = data.create_record("Project__c", t0, Stage__c="Draft", GA_Client_ID__c="9.9")
    data.update_record("Project__c", pid, t0 + timedelta(minutes=1), Stage__c=None)
    data.update_record("Project__c", pid, t0 + timedelta(minutes=2), Stage__c="Live")
    row = {"Field": "Stage__c", "OldValue": "Draft", "NewValue": "Live", "DataType": "Text"}
    # Times as other tools write them: Z and no milliseconds, or an offset with a colon.
    other = data.create_record("Project__c", t0, Stage__c="Draft", GA_Client_ID__c="8.8")
    stamp = (t0 + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data.insert_raw("Project__History", {**row, "Id": "017RAW000000001AAA", "ParentId": other,
                                          "CreatedDate": stamp})  # fmt: skip
    data.insert_raw("Project__History", {**row, "ParentId": pid, "CreatedDate": t0})
    data.insert_raw("Project__History", {**row, "Id": "017RAW000000002AAA", "ParentId": None,
                                          "CreatedDate": t0})  # fmt: skip
    engine, _ = make_engine(mapping=mapping)
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.rejected == 2
    rows = engine.store.list_outbox()
    invalid = sorted(r.reason for r in rows if r.status == "invalid")
    assert invalid == [
        "malformed CRM record Project__History/017RAW000000002AAA: history row has no Id/ParentId",
        "malformed CRM record Project__History/?: history row has no Id/ParentId",
    ]
    # Cleared to blank is not a move; the move out of the blank stage is.
    assert _times(engine.store, pid) == [
        (None, "Draft", t0),
        (None, "Live", t0 + timedelta(minutes=2)),
    ]
    assert _times(engine.store, other)[-1] == ("Draft", "Live", t0 + timedelta(minutes=3))


def test_a_lead_without_id_is_invalid_and_the_other_leads_go_on(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    mapping = tmp_path / "lead.yaml"
    mapping.write_text(LEAD_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    lead = data.create_lead(t0, status="Open - Not Contacted", GA_Client_ID__c="GA1.1.11.22")
    data.insert_raw(
        "Lead",
        {"Status": "Qualified", "CreatedDate": t0, "SystemModstamp": t0, "GA_Client_ID__c": ""},
    )
    engine, _ = make_engine(mapping=mapping)
    report = engine.capture("salesforce")
    assert report.status == "ok" and report.rejected == 1
    rows = engine.store.list_outbox()
    assert [r.reason for r in rows if r.status == "invalid"] == [
        "malformed CRM record Lead/?: no Id"
    ]
    assert _times(engine.store, lead) == [(None, "Open - Not Contacted", t0)]


def test_lead_status_without_history_tracking_warns_instead_of_an_empty_success(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    """An org where Lead.Status is not history-tracked has no Status rows in LeadHistory:
    the run used to report ok with no moves. Now it says why, in the run and in status."""
    data = sandbox.salesforce.data
    data.tracked["Lead"] = set()
    mapping = tmp_path / "lead.yaml"
    mapping.write_text(LEAD_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    lead = data.create_lead(t0, status="Open - Not Contacted", GA_Client_ID__c="11.22")
    data.move_lead(lead, "Working - Contacted", t0 + timedelta(minutes=1))
    engine, config = make_engine(mapping=mapping)
    report = engine.capture("salesforce")
    assert report.status == "ok"
    (warning,) = report.warnings
    assert "Lead.Status has no field history tracking" in warning
    assert "LeadHistory" in warning and "Set History Tracking" in warning
    assert "detection: snapshot" in warning and "conversions still are" in warning
    again = engine.capture("salesforce")
    assert again.warnings == report.warnings  # every run says it...
    assert again.api_calls == 1  # ...from the first run's FieldDefinition answer: leads only
    assert engine.store.last_runs()[0].warnings


def test_mappings_validate_warns_up_front_when_the_stage_field_history_is_not_tracked(
    sandbox: SandboxEnvironment, tmp_path: Path, state_url: str
) -> None:
    """The run's warning, said before the first run: `mappings validate --config`."""
    from click.testing import CliRunner
    from ga4sync.cli import main

    sandbox.salesforce.data.tracked["Lead"] = set()
    mapping = tmp_path / "lead.yaml"
    mapping.write_text(LEAD_MAPPING)
    config = sandbox.write_config(state_url=state_url, mapping=mapping)
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output
    assert "Lead.Status has no field history tracking" in result.output


def test_a_window_beyond_24_months_of_field_history_warns(
    sandbox: SandboxEnvironment, tmp_path: Path, state_url: str
) -> None:
    from ga4sync.connectors.registry import build_connector
    from ga4sync.core.model import TimeWindow
    from ga4sync.mapping.load import load_mapping
    from ga4sync.pipeline.config import load_config
    from ga4sync.pipeline.fetch_spec import fetch_spec

    mapping = tmp_path / "lead.yaml"
    mapping.write_text(LEAD_MAPPING)
    config = load_config(sandbox.write_config(state_url=state_url, mapping=mapping))
    settings = config.connector("salesforce")
    loaded = load_mapping(config.resolve(settings.mapping))
    end = _now(sandbox)
    for days, warned in ((729, False), (731, True)):
        connector = build_connector(settings, fetch_spec(loaded), base_dir=config.base_dir)
        try:
            list(connector.fetch_transitions(TimeWindow(start=end - timedelta(days=days), end=end)))
        finally:
            connector.close()
        found = [w for w in connector.warnings if "24 months" in w]
        assert bool(found) is warned, (days, connector.warnings)
    assert "returns LeadHistory rows through the API for about 24 months only" in found[0]
