"""GA4 Measurement Protocol rules, as Google's validation server applies them (ga4-mp.md).

Pure: payload -> messages. ga4sync sends only what passes in ENFORCE_RECOMMENDATIONS mode,
because production (RELAXED) silently drops or alters what breaks a rule and still answers 2xx.

Every rule is in `RULES` with the modes it applies to. RELAXED reports only what makes a
request malformed (bad names, reserved names, wrong JSON types, too many events, too big);
what production silently drops or clamps (long values, too many params, old timestamps,
client_id format) and the rules ga4sync adds for safety (PII, value without currency, empty
transaction_id, milliseconds) are reported in ENFORCE only. Descriptions use Google's wording
where it is known (ga4-mp.md "Real descriptions seen"), the same style elsewhere, and
`fieldPath` is as coarse as Google's. Everything is collected; `debug_response` shows the first,
as the validation server does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME = 40
MAX_PARAM_VALUE = 100
MAX_USER_PROPERTIES = 25
MAX_USER_PROPERTY_NAME = 24
MAX_USER_PROPERTY_VALUE = 36
MAX_ITEMS = 200
MAX_ITEM_CUSTOM_PARAMS = 10
MAX_BODY_BYTES = 130_000
"""The body must be smaller than this (130,000 bytes is already too big)."""
MAX_USER_ID = 256
MAX_HASHED_EMAILS = 3
MAX_HASHED_PHONES = 3
MAX_ADDRESSES = 2
BACKDATE_WINDOW = timedelta(hours=72)
FUTURE_TOLERANCE = timedelta(minutes=1)

# \Z, not $: `$` also matches before a trailing newline, and "purchase\n" is not a name.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\Z")
CLIENT_ID = re.compile(r"^[0-9]+\.[0-9]+\Z")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}\Z")
CURRENCY = re.compile(r"^[A-Z]{3}\Z")

RESERVED_EVENTS = frozenset(
    """ad_activeview ad_click ad_exposure ad_query ad_reward adunit_exposure app_clear_data
    app_exception app_install app_remove app_store_refund app_update app_upgrade
    dynamic_link_app_open dynamic_link_app_update dynamic_link_first_open error firebase_campaign
    firebase_in_app_message_action firebase_in_app_message_dismiss
    firebase_in_app_message_impression first_open first_visit notification_dismiss
    notification_foreground notification_open notification_receive notification_send os_update
    session_start user_engagement ad_impression in_app_purchase screen_view""".split()  # noqa: SIM905
)
RESERVED_PARAM_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
RESERVED_PARAMS = frozenset({"firebase_conversion"})
RESERVED_USER_PROPERTIES = frozenset(
    {
        "first_open_time",
        "first_visit_time",
        "last_deep_link_referrer",
        "user_id",
        "first_open_after_install",
    }
)
RESERVED_USER_PROPERTY_PREFIXES = ("_", "firebase_", "ga_", "google_")
TOP_LEVEL_KEYS = frozenset(
    """client_id app_instance_id user_id timestamp_micros user_properties consent
    non_personalized_ads user_data user_location ip_override device user_agent events
    validation_behavior""".split()  # noqa: SIM905
)
EVENT_KEYS = frozenset({"name", "params", "timestamp_micros"})
CONSENT_KEYS = frozenset({"ad_user_data", "ad_personalization"})
USER_DATA_KEYS = frozenset({"sha256_email_address", "sha256_phone_number", "address"})
ADDRESS_KEYS = frozenset(
    """sha256_first_name sha256_last_name sha256_street city region postal_code
    country""".split()  # noqa: SIM905
)
ITEM_STANDARD_KEYS = frozenset(
    """item_id item_name affiliation coupon discount index item_brand item_category
    item_category2 item_category3 item_category4 item_category5 item_list_id item_list_name
    item_variant location_id price quantity promotion_id promotion_name creative_name
    creative_slot""".split()  # noqa: SIM905
)

PARSE_ERROR = "Unable to parse Measurement Protocol JSON payload."


class Mode(StrEnum):
    RELAXED = "RELAXED"
    ENFORCE = "ENFORCE_RECOMMENDATIONS"


@dataclass(frozen=True)
class Rule:
    """One rule of ga4-mp.md: which modes report it, and what it protects against."""

    id: str
    enforce_only: bool
    summary: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("json_object", False, "the body is a JSON object"),
        Rule("unknown_field", False, "only Measurement Protocol fields (parse error otherwise)"),
        Rule("client_id_required", False, "client_id (or app_instance_id) is present"),
        Rule("client_id_type", False, "client_id is a non-empty string"),
        Rule("client_id_format", True, "client_id is <number>.<number> (GA1.1. cookie stripped)"),
        Rule("user_id_type", False, "user_id is a string"),
        Rule("user_id_length", True, f"user_id has at most {MAX_USER_ID} characters"),
        Rule("timestamp_type", False, "timestamp_micros is an integer"),
        Rule("timestamp_millis", True, "timestamp_micros is microseconds, not milliseconds"),
        Rule("timestamp_future", True, "timestamp_micros is not in the future"),
        Rule("timestamp_too_old", True, "timestamp_micros is at most 72 h in the past"),
        Rule("user_properties_type", False, "user_properties is an object of {value} objects"),
        Rule("user_properties_count", True, f"at most {MAX_USER_PROPERTIES} user properties"),
        Rule("user_property_name", False, "user property names: letter, then letters/digits/_"),
        Rule("user_property_name_length", True, f"names at most {MAX_USER_PROPERTY_NAME} chars"),
        Rule("user_property_reserved", False, "user property names are not reserved"),
        Rule("user_property_value", False, "user property values are strings or numbers"),
        Rule("user_property_length", True, f"values at most {MAX_USER_PROPERTY_VALUE} chars"),
        Rule("consent", False, "consent values are GRANTED or DENIED"),
        Rule("non_personalized_ads", False, "non_personalized_ads is a boolean"),
        Rule("user_data_hashed", True, "user_data holds SHA-256 hex, never raw values"),
        Rule("user_data_count", True, "at most 3 emails, 3 phones, 2 addresses"),
        Rule("events_required", False, "at least one event"),
        Rule("events_count", False, f"at most {MAX_EVENTS} events per request"),
        Rule("event_type", False, "each event is an object"),
        Rule("event_name_required", False, "each event has a name"),
        Rule("event_name", False, "event names: letter, then letters/digits/_"),
        Rule("event_name_length", False, f"event names at most {MAX_NAME} characters"),
        Rule("event_name_reserved", False, "event names are not reserved"),
        Rule("params_type", False, "params is an object"),
        Rule("params_count", True, f"at most {MAX_PARAMS} params per event"),
        Rule("param_name", False, "param names: letter, then letters/digits/_"),
        Rule("param_name_length", True, f"param names at most {MAX_NAME} characters"),
        Rule("param_reserved", False, "param names are not reserved (names and prefixes)"),
        Rule("param_scalar", False, "param values are strings or numbers (arrays only items)"),
        Rule("param_value_length", True, f"string values at most {MAX_PARAM_VALUE} characters"),
        Rule("items_type", False, "items is a list of objects"),
        Rule("items_count", True, f"at most {MAX_ITEMS} items per event"),
        Rule("item_id_or_name", True, "each item has item_id or item_name"),
        Rule("item_custom_params", True, f"at most {MAX_ITEM_CUSTOM_PARAMS} custom item params"),
        Rule("value_number", True, "value is a number"),
        Rule("value_currency", True, "value comes with currency (else no revenue)"),
        Rule("currency_code", True, "currency is an uppercase ISO 4217 code"),
        Rule("transaction_id_empty", True, "purchase transaction_id is never empty"),
        Rule("pii", True, "no email address or phone number in params, properties, user_id"),
        Rule("body_size", False, f"body smaller than {MAX_BODY_BYTES:,} bytes"),
        Rule("unicode", False, "strings are valid Unicode (no lone UTF-16 surrogates)"),
    )
}

BODY_RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("duplicate_key", False, "no JSON object has the same key twice"),
        Rule("validation_behavior", False, "validation_behavior is RELAXED or ENFORCE_..."),
    )
}
"""Rules only the raw body can break (a parsed dict has lost its duplicate keys); applied by
`validate_body`, so by `ga4sync ga4 validate` and the sandbox's /debug/mp/collect."""


@dataclass(frozen=True)
class ValidationMessage:
    fieldPath: str  # noqa: N815 - Google's JSON field name
    description: str
    validationCode: str  # noqa: N815
    rule: str = field(default="", compare=False)
    """Our rule id (RULES); not part of Google's shape."""

    def as_dict(self) -> dict[str, str]:
        return {
            "fieldPath": self.fieldPath,
            "description": self.description,
            "validationCode": self.validationCode,
        }


def debug_response(messages: list[ValidationMessage]) -> dict[str, Any]:
    """The debug endpoint's shape: Google returns at most one message."""
    return {"validationMessages": [m.as_dict() for m in messages[:1]]}


def validate_payload(
    payload: Any, *, mode: Mode, now: datetime, body_bytes: int | None = None
) -> list[ValidationMessage]:
    """Every problem, in Google's order of discovery; callers show the first like Google does.

    `body_bytes` is the size of the body as it will be (or was) sent; without it the size is
    that of the compact UTF-8 encoding ga4sync sends.
    """
    from ga4sync.ga4.checker import PayloadChecker  # the walker imports this module's tables

    check = PayloadChecker(mode, now, body_bytes)
    check.payload(payload)
    return check.out


def encoded_size(payload: Any) -> int:
    """Bytes of the compact UTF-8 JSON; raises UnicodeEncodeError on a lone surrogate."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class NotJson(ValueError):
    """The body cannot be read as JSON at all (Google answers a bare parse error)."""


@dataclass(frozen=True)
class ParsedBody:
    payload: Any
    size: int
    duplicate_keys: list[str]


def _no_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON value (JSON has no NaN or Infinity)")


def parse_body(raw: bytes) -> ParsedBody:
    """Read a request body the way GA4 does: UTF-8 JSON, strictly (no NaN/Infinity).

    Python's json would accept `NaN` and silently keep the last of two duplicate keys; GA4's
    parser accepts neither, so NaN is not JSON here and duplicates are reported.
    """
    text_bytes = raw.removeprefix(b"\xef\xbb\xbf")  # a Windows editor's BOM is forgiven
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    try:
        text = text_bytes.decode("utf-8")
        payload = json.loads(text, object_pairs_hook=pairs, parse_constant=_no_constant)
    except RecursionError:
        raise NotJson("it is nested too deeply") from None
    except NotJson:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, 4300-digit integers
        if "integer string conversion" in str(exc):
            raise NotJson("a number has more than 4300 digits") from None
        raise NotJson(str(exc)) from None
    return ParsedBody(payload, len(text_bytes), duplicates)


def validate_body(
    raw: bytes, *, mode: Mode | None, now: datetime
) -> tuple[Mode, list[ValidationMessage]]:
    """Validate a raw request body like /debug/mp/collect; NotJson when it is not JSON.

    Without `mode`, the body's own `validation_behavior` chooses, else RELAXED (Google's way).
    """
    body = parse_body(raw)
    payload = body.payload
    out = [
        ValidationMessage(
            "", f"{PARSE_ERROR} Duplicate field [{key}].", "VALUE_INVALID", "duplicate_key"
        )
        for key in body.duplicate_keys
    ]
    behaviour = payload.get("validation_behavior") if isinstance(payload, dict) else None
    if behaviour is not None and behaviour not in {m.value for m in Mode}:
        out.append(
            ValidationMessage(
                "",
                f"{PARSE_ERROR} validation_behavior [{behaviour}]: must be RELAXED or "
                f"{Mode.ENFORCE.value}.",
                "VALUE_INVALID",
                "validation_behavior",
            )
        )
    chosen = mode or (Mode.ENFORCE if behaviour == Mode.ENFORCE.value else Mode.RELAXED)
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k != "validation_behavior"}
    return chosen, out + validate_payload(payload, mode=chosen, now=now, body_bytes=body.size)
