"""The catalogue of GA4 rules: each rule's id, the modes that report it, and the message shape.

Every rule is in `RULES` with the modes it applies to. RELAXED reports only what makes a
request malformed (bad names, reserved names, wrong JSON types, too many events, too big);
what production silently drops or clamps (long values, too many params, old timestamps,
client_id format) and the rules ga4sync adds for safety (PII, value without currency, empty
transaction_id, milliseconds) are reported in ENFORCE only. Mapping validation
(mapping/ga4_checks.py) names the same rule ids, so both sides agree on what a rule is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ga4sync.ga4.limits import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    MAX_ITEM_CUSTOM_PARAMS,
    MAX_ITEMS,
    MAX_NAME,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_USER_ID,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME,
    MAX_USER_PROPERTY_VALUE,
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


def debug_response(messages: list[ValidationMessage]) -> dict[str, list[dict[str, str]]]:
    """The debug endpoint's shape: Google returns at most one message."""
    return {"validationMessages": [m.as_dict() for m in messages[:1]]}
