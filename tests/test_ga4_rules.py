"""The GA4 validator, table-driven: one valid and one invalid payload per rule and per limit.

Each invalid case is checked in both modes: ENFORCE_RECOMMENDATIONS must report the rule;
RELAXED must report it exactly when the rule is not `enforce_only` (production silently drops
or alters the rest). Every rule in `RULES` must have a case, so a new rule cannot go untested.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.clock import to_micros
from ga4sync.core.model import Invalid, MappedEvent, MappingResult, StageTransition
from ga4sync.ga4.identity import hash_email
from ga4sync.ga4.rules import (
    BODY_RULES,
    MAX_BODY_BYTES,
    RULES,
    Mode,
    NotJson,
    debug_response,
    validate_body,
    validate_payload,
)
from ga4sync.mapping.apply import apply_mapping
from ga4sync.mapping.ga4_checks import check_rule, check_user_properties
from ga4sync.mapping.load import load_mapping
from ga4sync.mapping.model import Rule as MappingRule

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)
H = timedelta(hours=1)


def base(**top: Any) -> dict[str, Any]:
    """A valid payload: one lead event with value and currency; `top` overrides/extends."""
    payload: dict[str, Any] = {
        "client_id": "1857116524.1675709798",
        "events": [
            {
                "name": "generate_lead",
                "params": {"value": 1250.0, "currency": "USD", "lead_source": "web"},
                "timestamp_micros": NOW_US - 300_000_000,
            }
        ],
    }
    payload.update(top)
    return payload


def with_params(**params: Any) -> dict[str, Any]:
    payload = base()
    payload["events"][0]["params"].update(params)
    return payload


def with_event(**fields: Any) -> dict[str, Any]:
    payload = base()
    payload["events"][0].update(fields)
    return payload


def without(key: str) -> dict[str, Any]:
    payload = base()
    del payload[key]
    return payload


def events(n: int) -> dict[str, Any]:
    one = base()["events"][0]
    return base(events=[copy.deepcopy(one) for _ in range(n)])


def n_params(n: int) -> dict[str, Any]:
    extra = {f"p{i}": "x" for i in range(n - 3)}
    return with_params(**extra)


def props(**values: Any) -> dict[str, Any]:
    return base(user_properties={k: {"value": v} for k, v in values.items()})


def purchase(**params: Any) -> dict[str, Any]:
    payload = with_event(name="purchase")
    payload["events"][0]["params"] = {"transaction_id": "T-1", "value": 10.0, "currency": "USD"}
    payload["events"][0]["params"].update(params)
    return payload


def items(items_list: Any) -> dict[str, Any]:
    return purchase(items=items_list)


def sized(total: int) -> dict[str, Any]:
    """A payload whose compact UTF-8 JSON is exactly `total` bytes (padding inside an item)."""
    payload = items([{"item_id": "A", "item_name": ""}])
    payload["events"][0]["params"]["items"] = [{"item_id": "A", "item_name": ""}] + [
        {"item_id": f"I{i}", "item_name": "n" * 99} for i in range(199)
    ]
    payload["events"] = payload["events"] * 4
    payload = json.loads(json.dumps(payload))
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    payload["events"][0]["params"]["items"][0]["item_name"] = "n" * (total - size)
    assert len(json.dumps(payload, separators=(",", ":")).encode()) == total
    return payload


def ts(micros: Any) -> dict[str, Any]:
    return with_event(timestamp_micros=micros)


EMAIL_HASH = hash_email("jane.doe@example.com")


@dataclass(frozen=True)
class Case:
    rule: str
    valid: Callable[[], Any]
    invalid: Callable[[], Any]
    code: str
    path: str
    label: str = ""


CASES = [
    Case("json_object", base, lambda: [base()], "VALUE_INVALID", ""),
    Case("unknown_field", base, lambda: base(evnts=[]), "VALUE_INVALID", "", "top level"),
    Case("unknown_field", base, lambda: with_event(parameters={}), "VALUE_INVALID", "", "event"),
    Case("client_id_required", base, lambda: without("client_id"), "VALUE_REQUIRED", "client_id"),
    Case(
        "client_id_type", base, lambda: base(client_id=1857116524.1), "VALUE_INVALID", "client_id"
    ),
    Case(
        "client_id_format",
        lambda: base(client_id="GA1.1.1857116524.1675709798"),
        lambda: base(client_id="18"),
        "VALUE_INVALID",
        "client_id",
        "GA1.1. cookie ok, order number not",
    ),
    Case(
        "client_id_format",
        base,
        lambda: base(client_id="0f8fad5b-d9cb-469f-a165-70867728950e"),
        "VALUE_INVALID",
        "client_id",
        "uuid",
    ),
    Case(
        "user_id_type",
        lambda: base(user_id="crm-42"),
        lambda: base(user_id=42),
        "VALUE_INVALID",
        "user_id",
    ),  # fmt: skip
    Case(
        "user_id_length",
        lambda: base(user_id="u" * 256),
        lambda: base(user_id="u" * 257),
        "VALUE_OUT_OF_BOUNDS",
        "user_id",
    ),
    Case("timestamp_type", base, lambda: ts(1.5e15), "VALUE_INVALID", "timestamp_micros"),
    Case(
        "timestamp_millis",
        lambda: ts(NOW_US - 1_000_000),
        lambda: ts((NOW_US - 1_000_000) // 1000),
        "VALUE_INVALID",
        "timestamp_micros",
        "milliseconds passed as micros",
    ),
    Case(
        "timestamp_future",
        lambda: ts(NOW_US + 30_000_000),
        lambda: ts(NOW_US + 120_000_000),
        "VALUE_INVALID",
        "timestamp_micros",
    ),
    Case(
        "timestamp_too_old",
        lambda: ts(to_micros(NOW - 72 * H)),
        lambda: ts(to_micros(NOW - 72 * H - timedelta(seconds=1))),
        "VALUE_INVALID",
        "timestamp_micros",
        "72 h ok, 72 h + 1 s not (event)",
    ),
    Case(
        "timestamp_too_old",
        lambda: base(timestamp_micros=to_micros(NOW - 72 * H)),
        lambda: base(timestamp_micros=to_micros(NOW - 72 * H - timedelta(seconds=1))),
        "VALUE_INVALID",
        "timestamp_micros",
        "72 h ok, 72 h + 1 s not (request)",
    ),
    Case(
        "user_properties_type",
        lambda: props(tier="gold"),
        lambda: base(user_properties={"tier": "gold"}),
        "VALUE_REQUIRED",
        "user_properties",
    ),
    Case(
        "user_properties_count",
        lambda: props(**{f"p{i}": "x" for i in range(25)}),
        lambda: props(**{f"p{i}": "x" for i in range(26)}),
        "EXCEEDED_MAX_ENTITIES",
        "user_properties",
        "25 ok, 26 not",
    ),
    Case(
        "user_property_name",
        lambda: props(tier="x"),
        lambda: props(**{"1tier": "x"}),
        "NAME_INVALID",
        "user_properties",
    ),  # fmt: skip
    Case(
        "user_property_name_length",
        lambda: props(**{"a" * 24: "x"}),
        lambda: props(**{"a" * 25: "x"}),
        "VALUE_OUT_OF_BOUNDS",
        "user_properties",
        "24 ok, 25 not",
    ),
    Case(
        "user_property_reserved",
        lambda: props(tier="x"),
        lambda: props(first_open_time="x"),
        "NAME_RESERVED",
        "user_properties",
        "name",
    ),  # fmt: skip
    Case(
        "user_property_reserved",
        lambda: props(tier="x"),
        lambda: props(google_tier="x"),
        "NAME_RESERVED",
        "user_properties",
        "prefix",
    ),  # fmt: skip
    Case(
        "user_property_value",
        lambda: props(tier=3),
        lambda: props(tier={"a": 1}),
        "VALUE_INVALID",
        "user_properties",
    ),  # fmt: skip
    Case(
        "user_property_length",
        lambda: props(tier="x" * 36),
        lambda: props(tier="x" * 37),
        "VALUE_OUT_OF_BOUNDS",
        "user_properties",
        "36 ok, 37 not",
    ),
    Case(
        "consent",
        lambda: base(consent={"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}),
        lambda: base(consent={"ad_user_data": "yes"}),
        "VALUE_INVALID",
        "consent",
    ),
    Case(
        "non_personalized_ads",
        lambda: base(non_personalized_ads=False),
        lambda: base(non_personalized_ads="no"),
        "VALUE_INVALID",
        "non_personalized_ads",
    ),  # fmt: skip
    Case(
        "user_data_hashed",
        lambda: base(user_data={"sha256_email_address": [EMAIL_HASH]}),
        lambda: base(user_data={"sha256_email_address": ["jane.doe@example.com"]}),
        "VALUE_INVALID",
        "user_data",
    ),
    Case(
        "user_data_count",
        lambda: base(user_data={"sha256_email_address": [EMAIL_HASH] * 3}),
        lambda: base(user_data={"sha256_email_address": [EMAIL_HASH] * 4}),
        "EXCEEDED_MAX_ENTITIES",
        "user_data",
        "3 ok, 4 not",
    ),
    Case("events_required", base, lambda: base(events=[]), "VALUE_REQUIRED", "events"),
    Case(
        "events_count",
        lambda: events(25),
        lambda: events(26),
        "EXCEEDED_MAX_ENTITIES",
        "events",
        "25 ok, 26 not",
    ),  # fmt: skip
    Case("event_type", base, lambda: base(events=["purchase"]), "VALUE_INVALID", "events"),
    Case(
        "event_name_required",
        base,
        lambda: base(events=[{"params": {}}]),
        "VALUE_REQUIRED",
        "events",
    ),  # fmt: skip
    Case("event_name", base, lambda: with_event(name="_badEventName"), "NAME_INVALID", "events"),
    Case("event_name", base, lambda: with_event(name="lead-won"), "NAME_INVALID", "events", "dash"),
    Case(
        "event_name_length",
        lambda: with_event(name="e" * 40),
        lambda: with_event(name="e" * 41),
        "VALUE_OUT_OF_BOUNDS",
        "events",
        "40 ok, 41 not",
    ),
    Case(
        "event_name_reserved",
        base,
        lambda: with_event(name="session_start"),
        "NAME_RESERVED",
        "events",
    ),  # fmt: skip
    Case(
        "event_name_reserved",
        base,
        lambda: with_event(name="screen_view"),
        "NAME_RESERVED",
        "events",
        "web-only reserved",
    ),  # fmt: skip
    Case("params_type", base, lambda: with_event(params=["a"]), "VALUE_INVALID", "events.params"),
    Case(
        "params_count",
        lambda: n_params(25),
        lambda: n_params(26),
        "EXCEEDED_MAX_ENTITIES",
        "events.params",
        "25 ok, 26 not",
    ),  # fmt: skip
    Case("param_name", base, lambda: with_params(**{"1st": "x"}), "NAME_INVALID", "events.params"),
    Case(
        "param_name_length",
        lambda: with_params(**{"p" * 40: "x"}),
        lambda: with_params(**{"p" * 41: "x"}),
        "VALUE_OUT_OF_BOUNDS",
        "events.params",
        "40 ok, 41 not",
    ),
    *[
        Case(
            "param_reserved",
            base,
            lambda n=n: with_params(**{n: "x"}),
            "NAME_RESERVED",
            "events.params",
            n,
        )  # fmt: skip
        for n in ("firebase_conversion", "_x", "firebase_x", "ga_session", "google_x", "gtag.x")
    ],
    *[
        Case(
            "param_scalar",
            lambda: with_params(stage="won", amount=3),
            lambda v=v: with_params(stage=v),
            "VALUE_INVALID",
            "events.params",
            label,
        )  # fmt: skip
        for label, v in (("null", None), ("object", {"a": 1}), ("array", ["a"]), ("bool", True))
    ],
    Case(
        "param_value_length",
        lambda: with_params(note="x" * 100),
        lambda: with_params(note="x" * 101),
        "VALUE_OUT_OF_BOUNDS",
        "events.params",
        "100 ok, 101 not",
    ),
    Case(
        "items_type",
        lambda: items([{"item_id": "A"}]),
        lambda: items("A"),
        "VALUE_INVALID",
        "events.params.items",
    ),  # fmt: skip
    Case(
        "items_count",
        lambda: items([{"item_id": str(i)} for i in range(200)]),
        lambda: items([{"item_id": str(i)} for i in range(201)]),
        "EXCEEDED_MAX_ENTITIES",
        "events.params.items",
        "200 ok, 201 not",
    ),
    Case(
        "item_id_or_name",
        lambda: items([{"item_name": "Plan"}]),
        lambda: items([{"price": 1}]),
        "VALUE_REQUIRED",
        "events.params.items",
    ),  # fmt: skip
    Case(
        "item_custom_params",
        lambda: items([{"item_id": "A", **{f"c{i}": "x" for i in range(10)}}]),
        lambda: items([{"item_id": "A", **{f"c{i}": "x" for i in range(11)}}]),
        "EXCEEDED_MAX_ENTITIES",
        "events.params.items",
        "10 ok, 11 not",
    ),
    Case(
        "value_number",
        lambda: purchase(value=10),
        lambda: purchase(value="10.5"),
        "VALUE_INVALID",
        "events.params",
    ),  # fmt: skip
    Case(
        "value_currency",
        base,
        lambda: with_event(params={"value": 10.0}),
        "VALUE_REQUIRED",
        "events.params",
        "value without currency",
    ),
    Case(
        "currency_code",
        lambda: purchase(currency="EUR"),
        lambda: purchase(currency="usd"),
        "VALUE_INVALID",
        "events.params",
    ),  # fmt: skip
    Case(
        "transaction_id_empty",
        purchase,
        lambda: purchase(transaction_id=""),
        "VALUE_INVALID",
        "events.params",
    ),  # fmt: skip
    Case(
        "transaction_id_empty",
        purchase,
        lambda: purchase(transaction_id="  "),
        "VALUE_INVALID",
        "events.params",
        "blank",
    ),  # fmt: skip
    Case(
        "pii",
        lambda: with_params(lead_source="jane doe website"),
        lambda: with_params(lead_source="jane.doe@example.com"),
        "VALUE_INVALID",
        "events.params",
        "email in param",
    ),  # fmt: skip
    Case(
        "pii",
        lambda: with_params(ref="006000000000123"),
        lambda: with_params(ref="+1 (555) 010-9999"),
        "VALUE_INVALID",
        "events.params",
        "phone in param",
    ),  # fmt: skip
    Case(
        "pii",
        lambda: props(tier="gold"),
        lambda: props(contact="jane@example.com"),
        "VALUE_INVALID",
        "user_properties",
        "email in user property",
    ),  # fmt: skip
    Case(
        "pii",
        lambda: base(user_id="crm-0042"),
        lambda: base(user_id="+44 20 7123 4567"),
        "VALUE_INVALID",
        "user_id",
        "phone as user_id",
    ),  # fmt: skip
    Case(
        "body_size",
        lambda: sized(MAX_BODY_BYTES - 1),
        lambda: sized(MAX_BODY_BYTES),
        "VALUE_OUT_OF_BOUNDS",
        "",
        "129,999 ok, 130,000 not",
    ),
    Case(
        "unicode",
        lambda: with_params(note="Café \U0001f600"),
        lambda: with_params(note="\ud800"),
        "VALUE_INVALID",
        "",
        "lone surrogate",
    ),
    # Fixes found by the real-world audit: each was accepted (or crashed) before.
    Case(
        "event_name",
        base,
        lambda: with_event(name="purchase\n"),
        "NAME_INVALID",
        "events",
        "trailing newline",
    ),
    Case(
        "client_id_format",
        base,
        lambda: base(client_id="١٢٣.٤٥٦"),
        "VALUE_INVALID",
        "client_id",
        "non-ASCII digits",
    ),
    Case(
        "currency_code",
        base,
        lambda: with_params(currency="USD\n"),
        "VALUE_INVALID",
        "events.params",
        "trailing newline",
    ),
    Case(
        "param_scalar",
        base,
        lambda: with_params(value=float("nan")),
        "VALUE_INVALID",
        "events.params",
        "NaN from an empty spreadsheet cell",
    ),
    Case(
        "param_scalar",
        lambda: items([{"item_id": "A", "price": 9.5}]),
        lambda: items([{"item_id": "A", "price": float("inf")}]),
        "VALUE_INVALID",
        "events.params.items",
        "infinite item price",
    ),
    Case(
        "timestamp_type",
        lambda: with_event(timestamp_micros=str(NOW_US - 300_000_000)),
        lambda: with_event(timestamp_micros="١٢٣"),
        "VALUE_INVALID",
        "timestamp_micros",
        "non-ASCII digits",
    ),
    Case(
        "pii",
        lambda: items([{"item_id": "A", "item_name": "Poster 'Meet me @ the beach'"}]),
        lambda: items([{"item_id": "A", "buyer": "jane@example.com"}]),
        "VALUE_INVALID",
        "events.params.items",
        "email in item param",
    ),
    Case(
        "item_id_or_name",
        lambda: items([{"item_id": 0}]),
        lambda: items([{"item_id": "", "item_name": None}]),
        "VALUE_REQUIRED",
        "events.params.items",
        "numeric 0 id",
    ),
    Case(
        "user_data_hashed",
        lambda: base(user_data={"sha256_phone_number": [EMAIL_HASH]}),
        lambda: base(user_data={"sha256_phone_number": 15550109999}),
        "VALUE_INVALID",
        "user_data",
        "number, not list",
    ),
    Case(
        "unknown_field",
        lambda: base(user_data={"address": {"city": "london", "country": "GB"}}),
        lambda: base(user_data={"address": [None, 5]}),
        "VALUE_INVALID",
        "",
        "address not objects",
    ),
    Case(
        "unknown_field",
        lambda: base(user_data={"address": [{"postal_code": "SW1A1AA"}]}),
        lambda: base(user_data={"address": [{"postal_code": 12345}]}),
        "VALUE_INVALID",
        "",
        "address field not a string",
    ),
]


def _id(case: Case) -> str:
    return f"{case.rule}:{case.label}" if case.label else case.rule


def test_every_rule_has_a_case() -> None:
    assert {c.rule for c in CASES} == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_valid_case_passes_in_both_modes(case: Case) -> None:
    for mode in Mode:
        assert validate_payload(case.valid(), mode=mode, now=NOW) == [], mode


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_invalid_case_reports_its_rule(case: Case) -> None:
    enforced = validate_payload(case.invalid(), mode=Mode.ENFORCE, now=NOW)
    mine = [m for m in enforced if m.rule == case.rule]
    assert mine, f"{case.rule} not reported; got {enforced}"
    assert mine[0].validationCode == case.code
    assert mine[0].fieldPath == case.path
    assert mine[0].description
    relaxed = validate_payload(case.invalid(), mode=Mode.RELAXED, now=NOW)
    assert any(m.rule == case.rule for m in relaxed) is not RULES[case.rule].enforce_only


GOOGLE_SEEN = [
    (
        with_event(name="_badEventName"),
        Mode.RELAXED,
        {
            "fieldPath": "events",
            "description": "Event at index: [0] has invalid name [_badEventName]. Names must "
            "start with an alphabetic character.",
            "validationCode": "NAME_INVALID",
        },
    ),
    (
        with_event(name="session_start"),
        Mode.RELAXED,
        {
            "fieldPath": "events",
            "description": "Event at index: [0] has name [session_start] which is reserved.",
            "validationCode": "NAME_RESERVED",
        },
    ),
    (
        base(client_id="18"),
        Mode.ENFORCE,
        {
            "fieldPath": "client_id",
            "description": "client_id [18] has invalid format. It should be in "
            "<number>.<number> format.",
            "validationCode": "VALUE_INVALID",
        },
    ),
    (
        base(timestamp_micros=NOW_US - 73 * 3600 * 1_000_000),
        Mode.ENFORCE,
        {
            "fieldPath": "timestamp_micros",
            "description": "Measurement timestamp_micros has timestamp too far in the past. "
            "Measurement protocol only supports timestamps [72h] into the past. The current "
            f"time in UNIX microseconds is [{NOW_US}].",
            "validationCode": "VALUE_INVALID",
        },
    ),
    (
        base(names=[]),
        Mode.RELAXED,
        {
            "fieldPath": "",
            "description": "Unable to parse Measurement Protocol JSON payload. names: Cannot "
            "find field.",
            "validationCode": "VALUE_INVALID",
        },
    ),
]


@pytest.mark.parametrize("payload,mode,expected", GOOGLE_SEEN)
def test_descriptions_match_what_google_returns(
    payload: dict[str, Any], mode: Mode, expected: dict[str, str]
) -> None:
    got = debug_response(validate_payload(payload, mode=mode, now=NOW))
    assert got == {"validationMessages": [expected]}


def test_all_problems_are_collected_but_debug_view_shows_the_first() -> None:
    payload = base(client_id="18", user_id="jane@example.com")
    payload["events"][0]["name"] = "_bad"
    problems = validate_payload(payload, mode=Mode.ENFORCE, now=NOW)
    assert [p.rule for p in problems] == ["client_id_format", "pii", "event_name"]
    shown = debug_response(problems)["validationMessages"]
    assert len(shown) == 1 and shown[0]["fieldPath"] == "client_id"
    assert set(shown[0]) == {"fieldPath", "description", "validationCode"}


def test_relaxed_accepts_what_production_silently_alters() -> None:
    payload = base(client_id="order-1001")
    payload["events"][0]["params"]["note"] = "x" * 300
    payload["events"][0]["timestamp_micros"] = NOW_US - 100 * 3600 * 1_000_000
    assert validate_payload(payload, mode=Mode.RELAXED, now=NOW) == []
    rules = {m.rule for m in validate_payload(payload, mode=Mode.ENFORCE, now=NOW)}
    assert rules == {"client_id_format", "param_value_length", "timestamp_too_old"}


# -- ga4sync ga4 validate ------------------------------------------------------------------


def _validate(args: list[str], stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["ga4", "validate", *args], input=stdin)
    return result.exit_code, result.output


def test_cli_clean_payload_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    payload = base()
    payload["events"][0].pop("timestamp_micros")
    path.write_text(json.dumps(payload))
    code, out = _validate([str(path)])
    assert code == 0, out
    assert json.loads(out) == {"validationMessages": []}


def test_cli_reports_first_message_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    payload = with_event(name="session_start")
    payload["events"][0].pop("timestamp_micros")
    path.write_text(json.dumps(payload))
    code, out = _validate([str(path)])
    assert code == 1
    assert json.loads(out)["validationMessages"][0]["validationCode"] == "NAME_RESERVED"


def test_cli_mode_relaxed_vs_enforce_from_stdin() -> None:
    payload = json.dumps({"client_id": "order-1001", "events": [{"name": "generate_lead"}]})
    assert _validate(["-", "--mode", "relaxed"], payload)[0] == 0
    code, out = _validate(["-", "--mode", "enforce"], payload)
    assert code == 1
    assert json.loads(out)["validationMessages"][0]["fieldPath"] == "client_id"


def test_cli_not_json_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    code, out = _validate([str(path)])
    assert code == 2
    assert "not JSON" in out
    path.write_bytes(b"\xff\xfe{\x00}")  # UTF-16 from a Windows editor: not a traceback
    code, out = _validate([str(path)])
    assert code == 2 and "not JSON" in out and "Traceback" not in out
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(base()).encode())  # a UTF-8 BOM is fine
    assert _validate([str(path)])[0] == 0


# -- real-world payloads ------------------------------------------------------------------

SHA = hash_email("jane.doe@example.com")
REAL_WORLD = {
    "Google docs purchase with items, custom item params and session params": {
        "client_id": "1857116524.1675709798",
        "user_id": "crm-0042",
        "timestamp_micros": str(NOW_US - 3_600_000_000),
        "non_personalized_ads": False,
        "consent": {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"},
        "user_properties": {"customer_tier": {"value": "premium"}, "ltv": {"value": 1250.5}},
        "user_location": {
            "city": "Mountain View",
            "region_id": "US-CA",
            "country_id": "US",
            "subcontinent_id": "021",
            "continent_id": "019",
        },
        "ip_override": "203.0.113.7",
        "device": {
            "category": "mobile",
            "language": "en",
            "screen_resolution": "1280x2856",
            "operating_system": "Android",
            "operating_system_version": "14",
            "model": "Pixel 9 Pro",
            "brand": "Google",
            "browser": "Chrome",
            "browser_version": "136.0.7103.60",
        },
        "user_agent": "Mozilla/5.0 (Linux; Android 14) Chrome/136.0 Mobile Safari/537.36",
        "events": [
            {
                "name": "purchase",
                "params": {
                    "transaction_id": "12345678901",  # numeric order id, not a phone
                    "value": 30.03,
                    "currency": "USD",
                    "tax": 4.90,
                    "shipping": 5.99,
                    "coupon": "SUMMER_FUN",
                    "session_id": "1675709798",
                    "engagement_time_msec": 100,
                    "order_date": "2026-11-20",
                    "ship_by": "11-22-2026",
                    "items": [
                        {
                            "item_id": "SKU_12345",
                            "item_name": "Tee 'Meet me @ the beach'",
                            "affiliation": "Google Merchandise Store",
                            "item_brand": "Google",
                            "item_category": "Apparel",
                            "item_variant": "green",
                            "price": 10.01,
                            "quantity": 3,
                            "item_image": "https://cdn.example.com/tee@2x.png",
                            "item_sku": "112-1234567-1234567",
                        }
                    ],
                },
            }
        ],
    },
    "Google docs user_data with hashed fields and address array": {
        "client_id": "GA1.1.1857116524.1675709798",
        "user_id": "crm-0042",
        "user_data": {
            "sha256_email_address": [SHA, SHA],
            "sha256_phone_number": [SHA],
            "address": [
                {
                    "sha256_first_name": SHA,
                    "sha256_last_name": SHA,
                    "sha256_street": SHA,
                    "city": "mountain view",
                    "region": "ca",
                    "postal_code": "94043",
                    "country": "US",
                }
            ],
        },
        "events": [
            {
                "name": "close_convert_lead",
                "params": {"value": 1250, "currency": "EUR", "session_id": 1675709798},
            }
        ],
    },
    "app stream with app_instance_id and a single user_data email": {
        "app_instance_id": "cbd7e6f2b1f9413a8d7e5f8c2a1b3c4d",
        "user_data": {"sha256_email_address": SHA},
        "events": [{"name": "qualify_lead", "params": {"lead_status": "Working - Contacted"}}],
    },
}


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_payloads_are_clean_in_both_modes(name: str) -> None:
    for mode in Mode:
        assert validate_payload(REAL_WORLD[name], mode=mode, now=NOW) == [], mode


# -- raw bodies: what only the bytes can break ---------------------------------------------

BODY_CASES = [
    ("duplicate_key", b'{"client_id":"1.2","client_id":"3.4","events":[{"name":"a"}]}'),
    ("duplicate_key", b'{"client_id":"1.2","events":[{"name":"a","params":{"v":1,"v":2}}]}'),
    (
        "validation_behavior",
        b'{"client_id":"1.2","validation_behavior":"enforce","events":[{"name":"a"}]}',
    ),
]


def test_every_body_rule_has_a_case() -> None:
    assert {rule for rule, _ in BODY_CASES} == set(BODY_RULES)


@pytest.mark.parametrize("rule,raw", BODY_CASES)
def test_body_rules_report_in_both_modes(rule: str, raw: bytes) -> None:
    for mode in Mode:
        _, messages = validate_body(raw, mode=mode, now=NOW)
        assert messages and messages[0].rule == rule
        assert (messages[0].fieldPath, messages[0].validationCode) == ("", "VALUE_INVALID")


def test_body_size_is_that_of_the_bytes_sent_not_a_re_encoding() -> None:
    compact = json.dumps(base(), separators=(",", ":")).encode()
    padded = compact[:-1] + b" " * (MAX_BODY_BYTES - len(compact)) + b"}"
    assert len(padded) == MAX_BODY_BYTES
    _, messages = validate_body(padded, mode=Mode.RELAXED, now=NOW)
    assert [m.rule for m in messages] == ["body_size"]
    _, messages = validate_body(padded[:-2] + b"}", mode=Mode.RELAXED, now=NOW)
    assert messages == []


@pytest.mark.parametrize(
    "raw,why",
    [
        (b"", "Expecting value"),
        (b"   \n", "Expecting value"),
        (b'{"client_id":"1.2","events":[{"name":"a","params":{"v":NaN}}]}', "NaN"),
        (b'{"client_id":"1.2","events":[{"name":"a","params":{"v":-Infinity}}]}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"timestamp_micros":' + b"9" * 5000 + b"}", "4300 digits"),
        (b"\xff\xfe{\x00}\x00", "utf-8"),
    ],
)
def test_not_json_bodies_raise_not_json(raw: bytes, why: str) -> None:
    with pytest.raises(NotJson, match=why):
        validate_body(raw, mode=None, now=NOW)


# -- hostile input through the CLI: never a traceback, exit codes per contract -------------

HOSTILE = [
    ("empty body", b"", 2, None),
    ("top-level array", b'[{"client_id":"1.2","events":[{"name":"a"}]}]', 1, "VALUE_INVALID"),
    ("top-level null", b"null", 1, "VALUE_INVALID"),
    ("top-level string", b'"hello"', 1, "VALUE_INVALID"),
    ("events not a list", b'{"client_id":"1.2","events":{"name":"a"}}', 1, "VALUE_REQUIRED"),
    ("zero events", b'{"client_id":"1.2","events":[]}', 1, "VALUE_REQUIRED"),
    ("non-object events", b'{"client_id":"1.2","events":[1,"a",null,[]]}', 1, "VALUE_INVALID"),
    (
        "null everywhere",
        b'{"client_id":null,"user_id":null,"timestamp_micros":null,"user_properties":null,'
        b'"consent":null,"user_data":null,"events":null}',
        1,
        "VALUE_REQUIRED",
    ),
    (
        "nulls inside",
        b'{"client_id":"1.2","user_data":{"sha256_email_address":[null],'
        b'"sha256_phone_number":5,"address":[null,5]},'
        b'"events":[{"name":"a","params":{"items":null,"x":null}}]}',
        1,
        "VALUE_INVALID",
    ),
    ("NaN literal", b'{"client_id":"1.2","events":[{"name":"a","params":{"v":NaN}}]}', 2, None),
    ("deeply nested", b'{"events":' + b"[" * 50_000 + b"]" * 50_000 + b"}", 2, None),
    (
        "huge file",
        json.dumps(
            {"client_id": "1.2", "events": [{"name": "a", "params": {"x": "y" * 2_000_000}}]}
        ).encode(),
        1,
        "VALUE_OUT_OF_BOUNDS",
    ),
    ("duplicate keys", b'{"client_id":"1.2","client_id":"x","events":[{"name":"a"}]}', 1, None),
    (
        "numbers as strings",
        b'{"client_id":"1.2","timestamp_micros":"1","events":[{"name":"a",'
        b'"params":{"value":"10","currency":"USD"}}]}',
        0,
        None,
    ),
    (
        "unicode names",
        '{"client_id":"1.2","events":[{"name":"événement"}]}'.encode(),
        1,
        "NAME_INVALID",
    ),
    (
        "lone surrogate echoed in a description",
        b'{"client_id":"1.2","events":[{"name":"a","params":{"\\ud800":"x"}}]}',
        1,
        "NAME_INVALID",
    ),
    (
        "1e400 overflows to infinity",
        b'{"client_id":"1.2","events":[{"name":"a","params":{"v":1e400}}]}',
        1,
        "VALUE_INVALID",
    ),  # fmt: skip
]


@pytest.mark.parametrize("label,raw,exit_code,first_code", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_cli_survives_hostile_input(
    tmp_path: Path, label: str, raw: bytes, exit_code: int, first_code: str | None
) -> None:
    path = tmp_path / "body.json"
    path.write_bytes(raw)
    result = CliRunner().invoke(main, ["ga4", "validate", str(path), "--mode", "relaxed"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    if exit_code == 2:
        assert "is not JSON" in result.output
        return
    shown = json.loads(result.output)["validationMessages"]
    assert len(shown) == (1 if exit_code else 0)
    if first_code:
        assert shown[0]["validationCode"] == first_code


# -- one rule, two callers: mapping validation and payload validation agree -------------------

AgreementKind = str
RULES_OF_KIND: dict[AgreementKind, set[str]] = {
    "event_name": {"event_name", "event_name_length", "event_name_reserved"},
    "param_name": {"param_name", "param_name_length", "param_reserved"},
    "currency": {"currency_code"},
    "param_value": {"param_scalar", "param_value_length", "pii"},
    "id_param_value": {"param_scalar", "param_value_length", "pii"},
    "user_property_name": {
        "user_property_name",
        "user_property_name_length",
        "user_property_reserved",
    },
    "user_property_value": {"user_property_value", "user_property_length", "pii"},
}

AGREEMENT_CASES: list[tuple[AgreementKind, Any, bool]] = [
    # (what is checked, the name or fixed value, whether GA4's rules refuse it)
    ("event_name", "qualify_lead", False),
    ("event_name", "crm_closed_won", False),
    ("event_name", "_badEventName", True),
    ("event_name", "closed won", True),
    ("event_name", "qualify_lead\n", True),
    ("event_name", "é_lead", True),
    ("event_name", "e" * 40, False),
    ("event_name", "e" * 41, True),
    ("event_name", "session_start", True),
    ("event_name", "screen_view", True),
    ("param_name", "lead_source", False),
    ("param_name", "_reason", True),
    ("param_name", "deal size", True),
    ("param_name", "source\n", True),
    ("param_name", "firebase_conversion", True),
    ("param_name", "ga_session", True),
    ("param_name", "google_x", True),
    ("param_name", "p" * 40, False),
    ("param_name", "p" * 41, True),
    ("currency", "USD", False),
    ("currency", "USD\n", True),  # the drift issue 11 found: mapping took it, payload refused
    ("currency", "usd", True),
    ("currency", " EUR", True),
    ("currency", "EURO", True),
    ("currency", "ÉUR", True),
    ("param_value", "web", False),
    ("param_value", "v" * 100, False),
    ("param_value", "v" * 101, True),
    ("param_value", "jane@example.com", True),
    ("param_value", "john.doe%40example.com", True),
    ("param_value", "john.doe＠example.com", True),
    ("param_value", "Phone: +1 415 555 0100", True),
    ("param_value", "tel:+14155550100", True),
    ("param_value", "14155550100", True),
    ("param_value", "logo@2x.png", False),
    ("param_value", "2026-03-01", False),
    ("param_value", 12.5, False),
    ("param_value", float("inf"), True),
    ("id_param_value", "14155550100", False),  # a record id in an id param
    ("id_param_value", "jane@example.com", True),
    ("user_property_name", "crm_tier", False),
    ("user_property_name", "_tier", True),
    ("user_property_name", "first_open_time", True),
    ("user_property_name", "google_tier", True),
    ("user_property_name", "t" * 24, False),
    ("user_property_name", "t" * 25, True),
    ("user_property_name", "tier\n", True),
    ("user_property_value", "gold", False),
    ("user_property_value", "g" * 36, False),
    ("user_property_value", "g" * 37, True),
    ("user_property_value", "jane@example.com", True),  # the mapping check missed PII here
    ("user_property_value", "+44 20 7123 4567", True),
]


def _mapping_refuses(kind: AgreementKind, value: Any) -> bool:
    """Does `ga4sync mappings validate` refuse a mapping that writes `value` there?"""
    rule_fields: dict[str, Any] = {"to": "Closed Won", "event": "qualify_lead"}
    if kind == "user_property_name":
        found = check_user_properties({value: "gold"})
        return any(f.loc == ("user_properties", value) for f in found)
    if kind == "user_property_value":
        found = check_user_properties({"crm_tier": value})
        return any(f.loc == ("user_properties", "crm_tier") for f in found)
    where: tuple[str | int, ...]
    if kind == "event_name":
        rule_fields["event"] = value
        where = ("rules", 0, "event")
    elif kind == "param_name":
        rule_fields["params"] = {value: "web"}
        where = ("rules", 0, "params", value)
    elif kind == "currency":
        rule_fields["params"] = {"value": 100, "currency": value}
        where = ("rules", 0, "params", "currency")
    else:
        name = "lead_id" if kind == "id_param_value" else "lead_source"
        rule_fields["params"] = {name: value}
        where = ("rules", 0, "params", name)
    found = check_rule(0, MappingRule.model_validate(rule_fields), None)
    return any(f.loc == where for f in found)


def _payload_refuses(kind: AgreementKind, value: Any) -> bool:
    """Does the payload check (ENFORCE) refuse an event carrying `value` there?"""
    if kind == "event_name":
        payload = with_event(name=value)
    elif kind == "param_name":
        payload = with_params(**{value: "web"})
    elif kind == "currency":
        payload = with_params(currency=value)
    elif kind == "param_value":
        payload = with_params(lead_source=value)
    elif kind == "id_param_value":
        payload = with_params(lead_id=value)
    elif kind == "user_property_name":
        payload = props(**{value: "gold"})
    else:
        payload = props(crm_tier=value)
    found = validate_payload(payload, mode=Mode.ENFORCE, now=NOW)
    return any(m.rule in RULES_OF_KIND[kind] for m in found)


@pytest.mark.parametrize(
    "kind,value,refused", AGREEMENT_CASES, ids=[f"{k}-{v!r:.30}" for k, v, _ in AGREEMENT_CASES]
)
def test_mapping_and_payload_checks_agree(kind: AgreementKind, value: Any, refused: bool) -> None:
    assert _payload_refuses(kind, value) is refused
    assert _mapping_refuses(kind, value) is refused


# -- what a built event carries: no control characters, no disguised PII ----------------------

HOSTILE_MAPPING = """\
object: Opportunity
stage_field: StageName
client_id_field: GA_Client_ID__c
user_id_field: Owner__c
rules:
  - to: Closed Won
    event: close_convert_lead
    params:
      lead_source: {field: LeadSource}
      stage: {field: StageName}
      currency: {field: Currency, type: currency}
      value: {field: Amount, type: number}
"""


def _hostile_move(tmp_path: Path, **fields: Any) -> MappingResult:
    path = tmp_path / "m.yaml"
    path.write_text(HOSTILE_MAPPING)
    record = {
        "GA_Client_ID__c": "GA1.1.111.222",
        "LeadSource": "Web",
        "Currency": "USD",
        "Amount": "100",
        **fields,
    }
    move = StageTransition(
        connector="sf",
        object_type="Opportunity",
        record_id="006A",
        field="StageName",
        from_value="Prospecting",
        to_value="Closed Won",
        changed_at=NOW - timedelta(minutes=5),
        fields=record,
    )
    return apply_mapping(load_mapping(path), move)


def test_control_characters_from_the_crm_never_reach_ga4_params(tmp_path: Path) -> None:
    result = _hostile_move(
        tmp_path,
        LeadSource="Web\x1b]0;owned\x07\x1b[31m form\x00\x07",
        Currency="usd\n",
        Owner__c="rep\x1b[2J-7",
    )
    assert isinstance(result, MappedEvent), result
    assert result.event.params["lead_source"] == "Web form"
    assert result.event.params["currency"] == "USD"
    assert result.identity.user_id == "rep-7"
    sent = json.dumps({"params": result.event.params, "user_id": result.identity.user_id})
    assert not any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in json.loads(sent)["params"]["lead_source"]
    )


@pytest.mark.parametrize(
    "disguised",
    [
        "john.doe%40example.com",
        "john.doe＠example.com",
        "Phone: +1 415 555 0100",
        "tel:+14155550100",
        "14155550100",
        "jane\x00@example.com",
    ],
)
def test_disguised_pii_in_a_crm_field_is_refused_with_the_field_named(
    tmp_path: Path, disguised: str
) -> None:
    result = _hostile_move(tmp_path, LeadSource=disguised)
    assert isinstance(result, Invalid), result
    assert "param lead_source (field LeadSource) looks like an email address" in result.detail
