"""Preview, dry run and run agree on the same CRM data, for every shipped mapping and CRM.

All three read through the engine's capture plan (pipeline/plan.py). They once had a copy
each, and the copies drifted: with a HubSpot mapping written with a stage label (`to: Closed
won`), `run` sent the event while `mappings preview` and `backfill --dry-run` reported
`skip no_rule appointmentscheduled -> closedwon`. Each case below seeds a sandbox CRM (or a
CSV inbox), then asks `mappings preview` (the command, JSON out), the dry run `backfill
--dry-run` prints, and `run` (capture + delivery into the state store, both backends), and
requires the same event or the same skip reason for every transition.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.pipeline.backfill import BackfillRequest, dry_run
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.hubspot import RateLimits
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from tests.csv_support import POS_MAPPING, berlin, csv_config, write_rows

FAST = {"search_rate": 1000, "search_backoff": "10ms", "burst_backoff": "20ms"}
ROOMY = RateLimits(search_per_window=10_000, search_window=1.0, burst=10_000, burst_window=1.0)

Move = tuple[str, str, str]
"""(record id, from stage or `(new)`, to stage): one transition."""


@dataclass(frozen=True)
class Case:
    connector: str
    write_config: Callable[[SandboxEnvironment, str, Path], Path]
    seed: Callable[[SandboxEnvironment, Path], None]
    must_send: frozenset[str]
    """Events the data is built to produce, so agreement on "skip everything" cannot pass."""


# -- data --------------------------------------------------------------------------------------
def _opportunities(env: SandboxEnvironment, _base: Path) -> None:
    data, now = env.salesforce.data, env.clock.now()
    won = data.create_opportunity(
        now - timedelta(hours=5), stage="Prospecting", Amount=1200.0, GA_Client_ID__c="1.11"
    )
    data.move_opportunity(won, "Closed Won", now - timedelta(hours=1))
    anonymous = data.create_opportunity(now - timedelta(hours=5), stage="Prospecting", Amount=3.0)
    data.move_opportunity(anonymous, "Closed Won", now - timedelta(hours=2))
    qualified = data.create_opportunity(
        now - timedelta(hours=6), stage="Prospecting", Amount=50.0, GA_Client_ID__c="3.44"
    )
    data.move_opportunity(qualified, "Qualification", now - timedelta(hours=3))


def _leads(env: SandboxEnvironment, _base: Path) -> None:
    data, now = env.salesforce.data, env.clock.now()
    lead = data.create_lead(
        now - timedelta(hours=6), status="Open - Not Contacted", GA_Client_ID__c="5.66"
    )
    data.move_lead(lead, "Working - Contacted", now - timedelta(hours=4))
    data.convert_lead(lead, now - timedelta(hours=2))
    quiet = data.create_lead(now - timedelta(hours=5), status="Open - Not Contacted")
    data.move_lead(quiet, "Closed - Not Converted", now - timedelta(hours=3))


def _deals(env: SandboxEnvironment, _base: Path) -> None:
    data, now = env.hubspot.data, env.clock.now()
    won = data.create(
        "deals",
        now - timedelta(hours=5),
        {"dealstage": "appointmentscheduled", "ga_client_id": "7.88", "amount": "900"},
    )
    data.move("deals", won, "closedwon", now - timedelta(hours=1))
    lost = data.create(
        "deals", now - timedelta(hours=4), {"dealstage": "qualifiedtobuy", "amount": "10"}
    )
    data.move("deals", lost, "closedlost", now - timedelta(hours=2))


def _contacts(env: SandboxEnvironment, _base: Path) -> None:
    data, now = env.hubspot.data, env.clock.now()
    ada = data.create(
        "contacts",
        now - timedelta(hours=5),
        {"lifecyclestage": "lead", "ga_client_id": "9.10", "email": "ada@example.com"},
    )
    data.move("contacts", ada, "marketingqualifiedlead", now - timedelta(hours=3))
    data.move("contacts", ada, "customer", now - timedelta(hours=1))
    data.create("contacts", now - timedelta(hours=2), {"lifecyclestage": "subscriber"})


def _pos_rows(env: SandboxEnvironment, base: Path) -> None:
    now = env.clock.now()
    write_rows(
        base / "inbox" / "pos-today.csv",
        [
            f"S-1,purchase,{berlin(now - timedelta(hours=3))},19.90,1.2,,",
            f"S-2,purchase,{berlin(now - timedelta(hours=2))},5,,,no client id",
            f"C-1,call,{berlin(now - timedelta(hours=1))},0,3.4,,",
            f"X-1,refund,{berlin(now - timedelta(hours=1))},1,5.6,,no rule",
        ],
    )


# -- configs -----------------------------------------------------------------------------------
def _salesforce(mapping: Path) -> Callable[[SandboxEnvironment, str, Path], Path]:
    def write(env: SandboxEnvironment, state_url: str, _tmp: Path) -> Path:
        return env.write_config(state_url=state_url, mapping=mapping)

    return write


def _hubspot(mapping: Callable[[Path], Path]) -> Callable[[SandboxEnvironment, str, Path], Path]:
    def write(env: SandboxEnvironment, state_url: str, tmp: Path) -> Path:
        env.hubspot.limits = ROOMY
        return env.write_config(
            state_url=state_url, salesforce=False, hubspot=[mapping(tmp)], hubspot_options=FAST
        )

    return write


def _deals_by_label(tmp: Path) -> Path:
    """The shipped deals mapping with stages written as their labels, the way people do."""
    text = (MAPPINGS_DIR / "hubspot_deals.yaml").read_text()
    for stage_id, label in (("closedwon", "Closed Won"), ("closedlost", "Closed lost")):
        assert f"to: {stage_id}\n" in text
        text = text.replace(f"to: {stage_id}\n", f"to: {label}\n")
    path = tmp / "hubspot_deals_by_label.yaml"
    path.write_text(text)
    return path


def _csv(env: SandboxEnvironment, state_url: str, _tmp: Path) -> Path:
    return csv_config(env, state_url, mapping=POS_MAPPING)


CASES = {
    "salesforce_opportunity": Case(
        "salesforce",
        _salesforce(MAPPINGS_DIR / "salesforce_opportunity.yaml"),
        _opportunities,
        frozenset({"purchase", "qualify_lead"}),
    ),
    "salesforce_lead": Case(
        "salesforce",
        _salesforce(MAPPINGS_DIR / "salesforce_lead.yaml"),
        _leads,
        frozenset({"generate_lead", "working_lead", "close_convert_lead"}),
    ),
    "hubspot_deals": Case(
        "hubspot_deals",
        _hubspot(lambda _tmp: MAPPINGS_DIR / "hubspot_deals.yaml"),
        _deals,
        frozenset({"generate_lead", "purchase"}),
    ),
    "hubspot_deals_by_stage_label": Case(
        "hubspot_deals_by_label", _hubspot(_deals_by_label), _deals, frozenset({"purchase"})
    ),
    "hubspot_contacts": Case(
        "hubspot_contacts",
        _hubspot(lambda _tmp: MAPPINGS_DIR / "hubspot_contacts.yaml"),
        _contacts,
        frozenset({"generate_lead", "qualify_lead", "close_convert_lead"}),
    ),
    "csv_pos": Case("pos", _csv, _pos_rows, frozenset({"purchase", "generate_lead"})),
}


# -- what each path says -----------------------------------------------------------------------
def _outcome(status: str, event: str | None, reason: str | None) -> str:
    """`send <event>`, `skip <reason code>` or `invalid`: what a person reads per transition."""
    if status in ("send", "pending", "sent"):
        return f"send {event}"
    if status == "skip" or status == "skipped":
        return f"skip {(reason or '').split(':', 1)[0]}"
    return "invalid"


def _preview(config: Path, connector: str, out: Path) -> dict[Move, str]:
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "mappings", "preview", "--connector", connector,
         "--since", "7d", "--format", "json", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return {
        (t["record_id"], t["from_value"] or "(new)", t["to_value"]): _outcome(
            t["outcome"], t["event"], t["reason"]
        )
        for t in doc["transitions"]
    }


def _run(config: Path, connector: str) -> dict[Move, str]:
    loaded = load_config(config)
    store = StateStore.open(loaded.state_url())
    engine = Engine(loaded, store)
    try:
        report = engine.run_once([connector])
        assert report.captures[0].status == "ok", report.captures[0].error
        rows = store.list_outbox(connector=connector)
    finally:
        engine.close()
        store.close()
    return {
        (r.record_id, r.from_value or "(new)", r.to_value): _outcome(
            r.status, r.event_name, r.reason
        )
        for r in rows
    }


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_preview_dry_run_and_run_agree_on_every_transition(
    case: Case, sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    config = case.write_config(sandbox, state_url, tmp_path)
    case.seed(sandbox, config.parent)
    now = datetime.now(UTC)

    previewed = _preview(config, case.connector, tmp_path / "preview.json")
    request = BackfillRequest(case.connector, now - timedelta(days=7), now + timedelta(days=1))
    dry = dry_run(load_config(config), request, now=now)
    ran = _run(config, case.connector)

    assert previewed == ran
    sends = {outcome for outcome in ran.values() if outcome.startswith("send ")}
    assert sends >= {f"send {event}" for event in case.must_send}
    # The dry run reports counts and the events it would send (all of them: fewer than its
    # sample size here), and nothing was in the outbox yet when it ran.
    skipped = Counter(o.removeprefix("skip ") for o in ran.values() if o.startswith("skip "))
    assert dry.already == 0 and dry.transitions == len(ran)
    assert dry.skipped == skipped
    assert dry.invalid == sum(1 for o in ran.values() if o == "invalid")
    assert sorted((w.record_id, w.to_value, f"send {w.event_name}") for w in dry.sample) == sorted(
        (move[0], move[2], outcome) for move, outcome in ran.items() if outcome.startswith("send ")
    )


def test_a_refused_field_names_the_line_of_the_mapping_in_use_not_the_file_on_disk(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    """The connector only names the field; the plan places it in the mapping it runs, which
    is the last good version while the file on disk is half-edited (it once re-read the disk,
    and lost the line when the edit did not parse)."""
    text = (MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text()
    text = text.replace("lead_source: {field: LeadSource", "lead_source: {field: Lead_Sourse__c")
    mapping = tmp_path / "opportunity.yaml"
    mapping.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "Lead_Sourse__c" in ln)
    _opportunities(sandbox, tmp_path)
    config = load_config(sandbox.write_config(state_url=state_url, mapping=mapping))
    store = StateStore.open(config.state_url())
    engine = Engine(config, store)
    try:
        first = engine.capture("salesforce")
        mapping.write_text("# being edited\n" + text.replace("rules:", "rules: [", 1))
        second = engine.capture("salesforce")
    finally:
        engine.close()
        store.close()
    for report in (first, second):
        assert report.status == "failed"
        assert f"{mapping}:{line}:" in (report.error or ""), report.error
        assert 'rule 1 ("qualified"), params.lead_source.field: Salesforce has no field' in (
            report.error or ""
        )
    assert any("using the last good version" in w for w in second.warnings)


def test_an_object_the_crm_does_not_have_names_the_object_line(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "projects.yaml"
    mapping.write_text(
        "client_id_field: GA_Client_ID__c\n"
        "object: Projekt__c\n"
        "stage_field: Phase__c\n"
        "detection: snapshot\n"
        "rules: [{to: Won, event: qualify_lead}]\n"
    )
    config = load_config(sandbox.write_config(state_url=state_url, mapping=mapping))
    store = StateStore.open(config.state_url())
    engine = Engine(config, store)
    try:
        report = engine.capture("salesforce")
    finally:
        engine.close()
        store.close()
    assert report.status == "failed"
    assert f"{mapping}:2:1: object: Salesforce has no object `Projekt__c`" in (report.error or "")
