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

The file is read with the same YAML reader and pydantic models as config and mapping files, so
a misspelt key (`stgae:`), a time such as `yesterday` or an unknown HubSpot stage is one
`file:line:column` line naming the key, not a traceback or a silently ignored section.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from ga4sync.core.durations import parse_duration
from ga4sync.core.errors import ConfigError
from ga4sync.core.validation_errors import dotted, format_validation_error
from ga4sync.core.yamlsource import Loc, YamlDocument, YamlSourceError, load_yaml_file
from ga4sync.sandbox.hubspot_data import LIFECYCLE_STAGES, HubspotData, Pipeline, Stage
from ga4sync.sandbox.salesforce_data import SALESFORCE_ID, SalesforceData
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError


class ScenarioError(ConfigError):
    """A scenario file the sandbox cannot replay; each problem names file:line:column."""


def parse_time(value: datetime | str, now: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text.startswith(("-", "+")):
        sign = -1 if text[0] == "-" else 1
        return now + sign * parse_duration(text[1:])
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _time_shape(value: datetime | str) -> datetime | str:
    """Refuse at load what `parse_time` could not read later, when `now` is known."""
    try:
        parse_time(value, datetime(2000, 1, 1, tzinfo=UTC))
    except (ValueError, OverflowError):
        raise ValueError(
            f"`{value}` is neither an ISO time (2026-11-20T10:00:00Z) nor an offset from "
            "`now` such as -2h, -30m or -3d"
        ) from None
    return value


ScenarioTime = Annotated[datetime | str, AfterValidator(_time_shape)]
Scalar = str | int | float | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class SalesforceStep(_Strict):
    at: ScenarioTime
    stage: str | None = None
    fields: dict[str, Scalar] = Field(default_factory=dict)


class Opportunity(_Strict):
    id: str | None = None
    name: str | None = None
    amount: float | None = None
    currency: str | None = None
    client_id: str | None = None
    fields: dict[str, Scalar] = Field(default_factory=dict)
    stages: list[SalesforceStep] = Field(min_length=1)
    deleted_at: ScenarioTime | None = None


class SalesforceSection(_Strict):
    opportunities: list[Opportunity] = Field(default_factory=list)


class HubspotStep(_Strict):
    at: ScenarioTime
    stage: str | None = None
    properties: dict[str, Scalar] = Field(default_factory=dict)


class HubspotRecord(_Strict):
    id: str | None = None
    name: str | None = None
    amount: float | None = None
    currency: str | None = None
    client_id: str | None = None
    email: str | None = None
    pipeline: str | None = None
    properties: dict[str, Scalar] = Field(default_factory=dict)
    stages: list[HubspotStep] = Field(min_length=1)
    archived_at: ScenarioTime | None = None


class PipelineStage(_Strict):
    id: str
    label: str
    closed: bool = False


class HubspotPipeline(_Strict):
    id: str
    label: str
    stages: list[PipelineStage] = Field(min_length=1)


class HubspotSection(_Strict):
    pipelines: list[HubspotPipeline] = Field(default_factory=list)
    deals: list[HubspotRecord] = Field(default_factory=list)
    contacts: list[HubspotRecord] = Field(default_factory=list)


class ScenarioFile(_Strict):
    now: ScenarioTime | None = None
    salesforce: SalesforceSection = Field(default_factory=SalesforceSection)
    hubspot: HubspotSection = Field(default_factory=HubspotSection)


@dataclass
class Scenario:
    now: datetime
    content: ScenarioFile
    doc: YamlDocument
    """Kept so a problem found while replaying (an unknown stage) still names its line."""

    def error(self, loc: Loc, message: str) -> ScenarioError:
        return ScenarioError(f"{self.doc.where(loc)}: {dotted(loc)}: {message}")

    @property
    def has_hubspot(self) -> dict[str, bool]:
        """Which HubSpot objects the scenario holds records of (the sandbox wires those in)."""
        return {
            "deals": bool(self.content.hubspot.deals),
            "contacts": bool(self.content.hubspot.contacts),
        }


def load_scenario(path: str | Path, default_now: datetime | None = None) -> Scenario:
    try:
        doc = load_yaml_file(path)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    if not isinstance(doc.data, dict):
        raise ScenarioError(
            f"{path}:1:1: a scenario file is a block of keys: `salesforce:` and/or `hubspot:` "
            "(see docs/scenarios.md)"
        )
    try:
        content = ScenarioFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ScenarioError(
            format_validation_error(doc, exc, ScenarioFile, kind_of_file="scenario")
        ) from None
    now = default_now or datetime.now(UTC)
    if content.now is not None:
        now = parse_time(content.now, now)
    return Scenario(now, content, doc)


def apply_salesforce(
    scenario: Scenario, data: SalesforceData, client_id_field: str = "GA_Client_ID__c"
) -> list[str]:
    ids: list[str] = []
    for i, opp in enumerate(scenario.content.salesforce.opportunities):
        loc: Loc = ("salesforce", "opportunities", i)
        fields: dict[str, Any] = dict(opp.fields)
        for key, name in (("name", "Name"), ("amount", "Amount"), ("currency", "CurrencyIsoCode")):
            if key in opp.model_fields_set:
                fields[name] = getattr(opp, key)
        if opp.client_id is not None:
            fields[client_id_field] = opp.client_id
        if opp.id is not None and not SALESFORCE_ID.match(opp.id):
            # The sandbox refuses malformed ids in queries as Salesforce does (`invalid ID
            # field`), so a made-up id here would only fail later, far from its cause.
            raise scenario.error(
                (*loc, "id"),
                f"`{opp.id}` is not a Salesforce id (15 or 18 letters and digits, e.g. "
                "006000000000001AAA); leave it out to generate one",
            )
        first = opp.stages[0]
        if first.stage is None:
            raise scenario.error(
                (*loc, "stages", 0), "the first step creates the record: give it a `stage`"
            )
        oid = data.create_opportunity(
            parse_time(first.at, scenario.now),
            stage=first.stage,
            record_id=opp.id,
            **fields,
        )
        for step in opp.stages[1:]:
            at = parse_time(step.at, scenario.now)
            if step.stage is not None:
                data.move_opportunity(oid, step.stage, at, **step.fields)
            else:
                data.edit_opportunity(oid, at, **step.fields)
        if opp.deleted_at is not None:
            data.delete_opportunity(oid, parse_time(opp.deleted_at, scenario.now))
        ids.append(oid)
    return ids


def _stage_ids(data: HubspotData, object_type: str, pipeline: str | None) -> dict[str, str]:
    """Stage id -> pipeline label for the stages a record may take (HubSpot refuses others)."""
    if object_type == "contacts":
        return {value: "lifecycle stages" for value, _ in LIFECYCLE_STAGES}
    return {
        stage.id: p.label
        for p in data.pipelines.get(object_type, [])
        if pipeline is None or p.id == pipeline
        for stage in p.stages
    }


def apply_hubspot(scenario: Scenario, data: HubspotData) -> dict[str, list[str]]:
    """Replay the `hubspot:` section: extra deal pipelines, then deals and contacts.

    Each step's `stage` sets `dealstage` (deals) or `lifecyclestage` (contacts); `properties`
    sets anything else at the same time (e.g. `hs_lead_status`), writing history as HubSpot does.
    """
    section = scenario.content.hubspot
    for raw in section.pipelines:
        stages = [Stage(s.id, s.label, s.closed) for s in raw.stages]
        data.add_pipeline("deals", Pipeline(raw.id, raw.label, stages))
    ids: dict[str, list[str]] = {}
    for object_type, stage_prop in (("deals", "dealstage"), ("contacts", "lifecyclestage")):
        for i, rec in enumerate(getattr(section, object_type)):
            loc: Loc = ("hubspot", object_type, i)
            known = _stage_ids(data, object_type, rec.pipeline)
            for j, step in enumerate(rec.stages):
                if step.stage is not None and step.stage not in known:
                    raise scenario.error(
                        (*loc, "stages", j, "stage"),
                        f"`{step.stage}` is not a stage id here; HubSpot stores ids, not "
                        f"labels: one of {', '.join(sorted(known)) or '(none: unknown pipeline)'}",
                    )
            props: dict[str, Any] = dict(rec.properties)
            for key, prop in (
                ("name", "dealname"),
                ("amount", "amount"),
                ("currency", "deal_currency_code"),
                ("client_id", "ga_client_id"),
                ("email", "email"),
                ("pipeline", "pipeline"),
            ):
                if getattr(rec, key) is not None:
                    props[prop] = getattr(rec, key)
            first = rec.stages[0]
            props.update(first.properties)
            if first.stage is not None:
                props[stage_prop] = first.stage
            rid = data.create(
                object_type, parse_time(first.at, scenario.now), props, record_id=rec.id
            )
            for step in rec.stages[1:]:
                changes: dict[str, Any] = dict(step.properties)
                if step.stage is not None:
                    changes[stage_prop] = step.stage
                data.update(object_type, rid, parse_time(step.at, scenario.now), changes)
            if rec.archived_at is not None:
                data.archive(object_type, rid, parse_time(rec.archived_at, scenario.now))
            ids.setdefault(object_type, []).append(rid)
    return ids
