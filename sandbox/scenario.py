"""Scenario files: records and their stage history, replayed into the sandbox CRMs.

Format (YAML or JSON), documented in docs/scenarios.md:

    now: 2026-11-20T12:00:00Z        # optional; default: the time the file is loaded
    salesforce:
      opportunities:
        - id: 006000000000001AAA      # optional
          name: Acme renewal
          amount: 1200
          currency: USD
          client_id: "1234567890.1700000000"   # stored in GA_Client_ID__c
          fields: {LeadSource: Web}            # any other fields
          stages:                              # in time order; the first creates the record
            - {at: -48h, stage: Prospecting}
            - {at: -30h, stage: Closed Won}
          deleted_at: -1h                      # optional
    hubspot:
      pipelines:                       # optional extra deal pipelines
        - {id: renewals, label: Renewals, stages: [{id: "101", label: Closed won, closed: true}]}
      deals:                           # contacts: the same, `stage` sets lifecyclestage
        - id: "5001"                   # optional
          name: Acme renewal           # dealname; also amount, currency, client_id, pipeline
          properties: {hs_analytics_source: ORGANIC_SEARCH}
          stages:
            - {at: -48h, stage: appointmentscheduled}
            - {at: -2h, stage: closedwon, properties: {amount: 1500}}
          archived_at: -1h                     # optional

Times are ISO-8601 (`2026-11-20T10:00:00Z`) or offsets from `now` (`-2h`, `-30m`, `-3d`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from ga4sync.core.durations import parse_duration
from ga4sync.sandbox.hubspot_data import HubspotData, Pipeline, Stage
from ga4sync.sandbox.salesforce_data import SALESFORCE_ID, SalesforceData


class ScenarioError(ValueError):
    pass


def parse_time(value: Any, now: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.startswith(("-", "+")):
        sign = -1 if text[0] == "-" else 1
        return now + sign * parse_duration(text[1:])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"`{value}` is neither an ISO time nor an offset like -2h") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Scenario:
    now: datetime
    data: dict[str, Any]


def load_scenario(path: str | Path, default_now: datetime | None = None) -> Scenario:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {path} must be a mapping with a `salesforce:` section")
    now = default_now or datetime.now(UTC)
    if raw.get("now") is not None:
        now = parse_time(raw["now"], now)
    return Scenario(now, raw)


def apply_salesforce(
    scenario: Scenario, data: SalesforceData, client_id_field: str = "GA_Client_ID__c"
) -> list[str]:
    section = scenario.data.get("salesforce") or {}
    ids: list[str] = []
    for i, opp in enumerate(section.get("opportunities") or []):
        stages = opp.get("stages") or []
        if not stages:
            raise ScenarioError(f"salesforce.opportunities[{i}] needs at least one stage")
        fields = dict(opp.get("fields") or {})
        if "name" in opp:
            fields["Name"] = opp["name"]
        if "amount" in opp:
            fields["Amount"] = opp["amount"]
        if "currency" in opp:
            fields["CurrencyIsoCode"] = opp["currency"]
        if opp.get("client_id") is not None:
            fields[client_id_field] = str(opp["client_id"])
        record_id = opp.get("id")
        if record_id is not None and not SALESFORCE_ID.match(str(record_id)):
            # The sandbox refuses malformed ids in queries as Salesforce does (`invalid ID
            # field`), so a made-up id here would only fail later, far from its cause.
            raise ScenarioError(
                f"salesforce.opportunities[{i}].id `{record_id}` is not a Salesforce id (15 or "
                "18 letters and digits, e.g. 006000000000001AAA); leave it out to generate one"
            )
        first = stages[0]
        oid = data.create_opportunity(
            parse_time(first["at"], scenario.now),
            stage=str(first["stage"]),
            record_id=None if record_id is None else str(record_id),
            **fields,
        )
        for step in stages[1:]:
            at = parse_time(step["at"], scenario.now)
            if "stage" in step:
                data.move_opportunity(oid, str(step["stage"]), at, **(step.get("fields") or {}))
            else:
                data.edit_opportunity(oid, at, **(step.get("fields") or {}))
        if opp.get("deleted_at") is not None:
            data.delete_opportunity(oid, parse_time(opp["deleted_at"], scenario.now))
        ids.append(oid)
    return ids


def apply_hubspot(scenario: Scenario, data: HubspotData) -> dict[str, list[str]]:
    """Replay the `hubspot:` section: extra deal pipelines, then deals and contacts.

    Each step's `stage` sets `dealstage` (deals) or `lifecyclestage` (contacts); `properties`
    sets anything else at the same time (e.g. `hs_lead_status`), writing history as HubSpot does.
    """
    section = scenario.data.get("hubspot") or {}
    for i, raw in enumerate(section.get("pipelines") or []):
        stages = [
            Stage(str(s["id"]), str(s["label"]), bool(s.get("closed", False)))
            for s in raw.get("stages") or []
        ]
        if not stages or not raw.get("id") or not raw.get("label"):
            raise ScenarioError(f"hubspot.pipelines[{i}] needs id, label and stages")
        data.add_pipeline("deals", Pipeline(str(raw["id"]), str(raw["label"]), stages))
    ids: dict[str, list[str]] = {}
    for object_type, stage_prop in (("deals", "dealstage"), ("contacts", "lifecyclestage")):
        for i, rec in enumerate(section.get(object_type) or []):
            steps = rec.get("stages") or []
            if not steps:
                raise ScenarioError(f"hubspot.{object_type}[{i}] needs at least one stage")
            props = {k: v for k, v in (rec.get("properties") or {}).items()}
            for key, prop in (
                ("name", "dealname"),
                ("amount", "amount"),
                ("currency", "deal_currency_code"),
                ("client_id", "ga_client_id"),
                ("email", "email"),
                ("pipeline", "pipeline"),
            ):
                if rec.get(key) is not None:
                    props[prop] = rec[key]
            first = steps[0]
            props.update(first.get("properties") or {})
            if "stage" in first:
                props[stage_prop] = str(first["stage"])
            rid = data.create(
                object_type,
                parse_time(first["at"], scenario.now),
                props,
                record_id=str(rec["id"]) if rec.get("id") is not None else None,
            )
            for step in steps[1:]:
                changes = dict(step.get("properties") or {})
                if "stage" in step:
                    changes[stage_prop] = str(step["stage"])
                data.update(object_type, rid, parse_time(step["at"], scenario.now), changes)
            if rec.get("archived_at") is not None:
                data.archive(object_type, rid, parse_time(rec["archived_at"], scenario.now))
            ids.setdefault(object_type, []).append(rid)
    return ids
