"""The mapping model and apply: every documented feature, the schema, and the docs' examples."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.model import Invalid, MappedEvent, Skipped, StageTransition, Status
from ga4sync.ga4.identity import hash_email, hash_phone
from ga4sync.ga4.payload import request_body
from ga4sync.ga4.rules import Mode, validate_payload
from ga4sync.mapping.apply import apply_mapping
from ga4sync.mapping.load import LoadedMapping, check_mapping, load_mapping
from ga4sync.mapping.schema import SHIPPED_SCHEMA, mapping_json_schema, schema_text
from ga4sync.pipeline.capture import row_for_transition

DOCS = Path(__file__).parent.parent / "docs" / "mappings.md"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

HEADER = """\
object: Opportunity
stage_field: StageName
client_id_field: GA_Client_ID__c
"""


def mapping(tmp_path: Path, body: str, header: str = HEADER) -> LoadedMapping:
    path = tmp_path / "m.yaml"
    path.write_text(header + body)
    return load_mapping(path)


def move(
    to: str, fields: dict[str, Any], from_value: str | None = "Prospecting"
) -> StageTransition:
    return StageTransition(
        connector="sf",
        object_type="Opportunity",
        record_id="006A",
        field="StageName",
        from_value=from_value,
        to_value=to,
        changed_at=NOW - timedelta(minutes=5),
        fields={"Id": "006A", "GA_Client_ID__c": "GA1.1.111.222", **fields},
    )


def sent(result: object) -> MappedEvent:
    assert isinstance(result, MappedEvent), result
    return result


def test_cookie_client_id_is_normalised_and_bad_ones_skipped(tmp_path: Path) -> None:
    m = mapping(tmp_path, "rules:\n  - to: Closed Won\n    event: close_convert_lead\n")
    assert sent(apply_mapping(m, move("Closed Won", {}))).identity.client_id == "111.222"
    result = apply_mapping(m, move("Closed Won", {"GA_Client_ID__c": "jane@example.com"}))
    assert isinstance(result, Skipped) and result.reason == "bad_client_id"
    assert "looks like an email" in result.detail
    result = apply_mapping(m, move("Closed Won", {"GA_Client_ID__c": ""}))
    assert isinstance(result, Skipped) and result.reason == "no_client_id"


def test_from_to_labels_ids_lists_and_star(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """\
rules:
  - name: numeric id
    to: 12345678
    event: qualify_lead
  - name: list
    from: [Prospecting, Qualification]
    to: [Needs Analysis, Proposal/Price Quote]
    event: working_lead
  - name: anything else
    to: "*"
    event: crm_stage_change
""",
    )
    assert sent(apply_mapping(m, move("12345678", {}))).rule == "numeric id"
    assert sent(apply_mapping(m, move("proposal/price quote", {}))).rule == "list"
    assert sent(apply_mapping(m, move("Needs Analysis", {}, from_value="Closed Lost"))).rule == (
        "anything else"
    )
    first_stage = apply_mapping(m, move("Prospecting", {}, from_value=None))
    assert sent(first_stage).rule == "anything else"


def test_params_types_defaults_literals_and_currency(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """\
currency: EUR
rules:
  - to: Closed Won
    event: purchase
    params:
      transaction_id: {field: Id}
      value: {field: Amount, type: number}
      close_date: {field: CloseDate, type: date}
      lead_source: {field: LeadSource, default: unknown}
      tier: {value: gold}
      channel: crm
      weight: 3
""",
    )
    fields = {"Amount": "1,250.50", "CloseDate": "2026-03-01T10:00:00Z", "LeadSource": None}
    event = sent(apply_mapping(m, move("Closed Won", fields))).event
    assert dict(event.params) == {
        "transaction_id": "006A",
        "value": 1250.5,
        "close_date": "2026-03-01",
        "lead_source": "unknown",
        "tier": "gold",
        "channel": "crm",
        "weight": 3,
        "currency": "EUR",
    }
    row = row_for_transition(move("Closed Won", fields), m, now=NOW, scope="test")
    assert row.status == Status.PENDING, row.reason  # a date is not mistaken for a phone number
    bad = apply_mapping(m, move("Closed Won", {"Amount": "lots"}))
    assert isinstance(bad, Invalid) and "field Amount holds 'lots', not a number" in bad.detail
    # A decimal comma is refused, never read as 1990 (a thousands comma is fine, see above).
    comma = apply_mapping(m, move("Closed Won", {"Amount": "19,90"}))
    assert isinstance(comma, Invalid) and "holds '19,90', not a number" in comma.detail
    big = sent(apply_mapping(m, move("Closed Won", {"Amount": "-12,345,678"}))).event
    assert dict(big.params)["value"] == -12345678


def test_conditions_compare_and_list_membership(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """\
rules:
  - name: web deal
    to: Closed Won
    when: ["Amount > 0", "LeadSource in [Web, 'Phone Inquiry']"]
    event: close_convert_lead
""",
    )
    assert sent(apply_mapping(m, move("Closed Won", {"Amount": 5, "LeadSource": "web"})))
    assert sent(apply_mapping(m, move("Closed Won", {"Amount": 5, "LeadSource": "Phone Inquiry"})))
    for fields in ({"Amount": 0, "LeadSource": "Web"}, {"Amount": 9, "LeadSource": "Partner"}):
        result = apply_mapping(m, move("Closed Won", fields))
        assert isinstance(result, Skipped) and result.reason == "no_rule"


def test_identity_fields_are_hashed_and_user_properties_reach_the_request(
    tmp_path: Path,
) -> None:
    m = mapping(
        tmp_path,
        """\
session_id_field: GA_Session_ID__c
user_id_field: Contact_Id__c
email_field: Email
phone_field: Phone
consent:
  ad_user_data_field: Ads_Consent__c
  default: DENIED
user_properties:
  crm_industry: {field: Industry}
  crm_source: salesforce
rules:
  - to: Closed Won
    event: close_convert_lead
""",
    )
    fields = {
        "GA_Session_ID__c": "1700000000",
        "Contact_Id__c": "C-9",
        "Email": " Jane.Doe@Example.com ",
        "Phone": "+1 (555) 010-9999",
        "Ads_Consent__c": "granted",
        "Industry": "Retail",
    }
    t = move("Closed Won", fields)
    mapped = sent(apply_mapping(m, t))
    assert mapped.event.params["session_id"] == "1700000000"
    row = row_for_transition(t, m, now=NOW, scope="test")
    assert row.status == Status.PENDING, row.reason
    assert row.payload is not None
    assert row.payload["user_id"] == "C-9"
    assert row.payload["consent"] == {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}
    assert row.payload["user_data"] == {
        "sha256_email_address": [hash_email("jane.doe@example.com")],
        "sha256_phone_number": [hash_phone("+15550109999")],
    }
    assert "Jane" not in json.dumps(row.payload)
    assert row.payload["user_properties"] == {
        "crm_industry": {"value": "Retail"},
        "crm_source": {"value": "salesforce"},
    }
    body = request_body([row.payload])
    assert body["user_properties"]["crm_industry"] == {"value": "Retail"}
    assert validate_payload(body, mode=Mode.ENFORCE, now=NOW) == []


def test_user_property_with_personal_data_is_invalid_not_sent(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        "user_properties:\n  owner: {field: OwnerEmail}\n"
        "rules:\n  - to: Closed Won\n    event: close_convert_lead\n",
    )
    result = apply_mapping(m, move("Closed Won", {"OwnerEmail": "boss@example.com"}))
    assert isinstance(result, Invalid) and "user property owner" in result.detail


def test_once_per_record_defaults_on_for_conversions(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        """\
rules:
  - to: Closed Won
    event: close_convert_lead
  - to: Negotiation/Review
    event: working_lead
  - to: Closed Lost
    event: close_unconvert_lead
    once_per_record: true
""",
    )
    assert sent(apply_mapping(m, move("Closed Won", {}))).once_per_record is True
    assert sent(apply_mapping(m, move("Negotiation/Review", {}))).once_per_record is False
    assert sent(apply_mapping(m, move("Closed Lost", {}))).once_per_record is True


def test_shipped_schema_is_the_generated_one() -> None:
    assert SHIPPED_SCHEMA.read_text() == schema_text()
    result = CliRunner().invoke(main, ["mappings", "schema"])
    assert result.exit_code == 0
    printed = json.loads(result.output)
    assert printed == mapping_json_schema()
    rule = printed["$defs"]["Rule"]
    assert rule["additionalProperties"] is False
    assert {"from", "to", "event", "params", "when", "once_per_record"} <= set(rule["properties"])
    assert "client_id_field" in printed["required"]
    assert "user_properties" in printed["properties"]


def test_no_expression_can_run_code(tmp_path: Path) -> None:
    """A condition or param that looks like code is text or an error, never evaluated."""
    path = tmp_path / "m.yaml"
    path.write_text(
        HEADER + "rules:\n  - to: Closed Won\n    event: close_convert_lead\n"
        "    when: [\"__import__('os').system('x')\"]\n"
        '    params:\n      note: "{{ record.Amount * 2 }}"\n'
    )
    problems = check_mapping(path).problems
    assert len(problems) == 1
    assert problems[0].where == "rule 1, when #1"
    assert "cannot read condition" in problems[0].message


def _doc_examples() -> list[tuple[int, str]]:
    text = DOCS.read_text()
    blocks = []
    for m in re.finditer(r"```yaml\n(.*?)```", text, re.S):
        if "rules:" in m.group(1):
            blocks.append((text[: m.start()].count("\n") + 1, m.group(1)))
    return blocks


def test_docs_cover_every_feature_with_examples() -> None:
    text = DOCS.read_text()
    examples = "\n".join(block for _, block in _doc_examples())
    for feature in (
        "stage_field:",
        "client_id_field:",
        "session_id_field:",
        "user_id_field:",
        "email_field:",
        "phone_field:",
        "consent:",
        "from:",
        '"*"',
        "type: number",
        "type: string",
        "type: currency",
        "type: date",
        "default:",
        "{value:",
        "Amount > 0",
        "LeadSource in [",
        "once_per_record:",
        "user_properties:",
        "resend_if_unknown:",
        "currency:",
    ):
        assert feature in examples, f"docs/mappings.md has no example using {feature}"
    assert "ga4sync mappings validate" in text and "ga4sync mappings preview" in text


@pytest.mark.parametrize("start_line,block", _doc_examples(), ids=lambda v: str(v)[:12])
def test_every_docs_example_validates(tmp_path: Path, start_line: int, block: str) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(block)
    assert [str(p) for p in check_mapping(path).problems] == [], f"docs line {start_line}"


def test_field_and_stage_names_are_checked_against_the_crm_lists(tmp_path: Path) -> None:
    from ga4sync.mapping.checks import FieldCatalog

    path = tmp_path / "m.yaml"
    path.write_text(
        "object: deals\nstage_field: dealstage\nclient_id_field: ga_client_id\n"
        "rules:\n"
        "  - from: Sales Pipeline/Appointment Scheduled\n"
        "    to: [closedwon, Closed Lots]\n"
        "    when: [amont > 0]\n"
        "    event: close_convert_lead\n"
    )
    catalog = FieldCatalog(
        "deals",
        frozenset({"dealstage", "ga_client_id", "amount"}),
        "HubSpot properties of deals",
        frozenset(
            {"closedwon", "Closed Won", "Closed Lost", "Sales Pipeline/Appointment Scheduled"}
        ),
    )
    problems = [str(p) for p in check_mapping(path, catalog).problems]
    assert problems == [
        f"{path}:6:21: rule 1, to #2: unknown stage `Closed Lots`, did you mean `Closed Lost`? "
        "(stages come from the HubSpot properties of deals) — write `Closed Lost`",
        f"{path}:7:12: rule 1, when #1: unknown field `amont` on deals, did you mean `amount`? "
        "(fields come from the HubSpot properties of deals) — write `amount`",
    ]
    assert check_mapping(path).problems == []


def test_editors_schema_accepts_shipped_mappings_and_flags_typos() -> None:
    """What an editor does with the schema line: shipped files pass, a typo is underlined."""
    import jsonschema
    import yaml

    schema = json.loads(SHIPPED_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    # The `$schema` line serves editors in a checkout (mappings/ beside sync/schemas/), the
    # place sales ops edit; the installed copy of the schema must be that same file.
    checkout = Path(__file__).resolve().parent.parent
    in_checkout = checkout / "sync" / "schemas" / "mapping.schema.json"
    assert in_checkout.read_bytes() == SHIPPED_SCHEMA.read_bytes()
    for path in sorted((checkout / "mappings").glob("*.yaml")):
        comment = path.read_text().splitlines()[0].split("$schema=", 1)[1]
        assert (path.parent / comment).resolve() == in_checkout.resolve()
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path.name
    for _, block in _doc_examples():
        assert list(validator.iter_errors(yaml.safe_load(block))) == []
    corpus = Path(__file__).parent / "data" / "broken_mappings"
    for name in ("unknown_top_key.yaml", "unknown_rule_key.yaml", "missing_client_id_field.yaml"):
        assert list(validator.iter_errors(yaml.safe_load((corpus / name).read_text()))), name


def test_a_param_reading_the_stage_field_gets_the_stage_of_this_move(tmp_path: Path) -> None:
    """Two moves between polls: the record already shows the later stage when it is read, but
    each event must carry its own (else both would be the same event in GA4's eyes)."""
    m = mapping(
        tmp_path,
        """\
rules:
  - to: "*"
    event: working_lead
    params:
      lead_status: {field: StageName}
""",
    )
    later = {"StageName": "Negotiation/Review"}
    first = sent(apply_mapping(m, move("Value Proposition", later, from_value="Qualification")))
    second = sent(apply_mapping(m, move("Negotiation/Review", later, "Value Proposition")))
    assert dict(first.event.params)["lead_status"] == "Value Proposition"
    assert dict(second.event.params)["lead_status"] == "Negotiation/Review"
