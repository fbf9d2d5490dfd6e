"""The one implementation of each GA4 rule on a single name or value (ga4-mp.md).

Both validators ask these functions: the payload walk (checker.py, event_checks.py) about
events already built, and mapping validation (mapping/ga4_checks.py) about the names and fixed
values a mapping file writes. Each answers with the ids of the rules broken (catalogue.RULES),
in the order Google reports them, and leaves the wording to its caller: a payload message
reads like Google's, a mapping finding tells a sales-ops person which line to fix. They used to
be written twice and drifted (the mapping check took the currency "USD\\n" the payload check
refused); tests/test_ga4_rules.py runs one table of cases through both to keep them together.
"""

from __future__ import annotations

import json
import math

from ga4sync.ga4.identity import strip_cookie_prefix
from ga4sync.ga4.limits import (
    CLIENT_ID,
    CURRENCY,
    MAX_NAME,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME,
    MAX_USER_PROPERTY_VALUE,
    NAME,
    RESERVED_EVENTS,
    RESERVED_PARAM_PREFIXES,
    RESERVED_PARAMS,
    RESERVED_USER_PROPERTIES,
    RESERVED_USER_PROPERTY_PREFIXES,
)
from ga4sync.ga4.pii import looks_like_pii

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""The form GA4's size limits are measured on; built once (`json.dumps` with options builds an
encoder on every call, and payloads are measured once or twice per event)."""


def is_number(value: object) -> bool:
    """JSON numbers GA4 can store: not booleans, not NaN/Infinity."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def is_currency_code(value: object) -> bool:
    """An uppercase ISO 4217 shape: exactly three capitals, nothing after (not "USD\\n")."""
    return isinstance(value, str) and CURRENCY.match(value) is not None


def is_client_id(value: str) -> bool:
    """`<number>.<number>`, after the `GA1.1.` cookie prefix is taken off."""
    return CLIENT_ID.match(strip_cookie_prefix(value)) is not None


def event_name_breaks(name: str) -> list[str]:
    """At most one of: event_name, event_name_length, event_name_reserved."""
    if not NAME.match(name):
        return ["event_name"]
    if len(name) > MAX_NAME:
        return ["event_name_length"]
    if name in RESERVED_EVENTS:
        return ["event_name_reserved"]
    return []


def param_name_breaks(name: str) -> list[str]:
    """param_name or param_name_length, then param_reserved: GA4 reports a reserved prefix
    even on a name that is also malformed (`_reason`)."""
    out: list[str] = []
    if not NAME.match(name):
        out.append("param_name")
    elif len(name) > MAX_NAME:
        out.append("param_name_length")
    if name in RESERVED_PARAMS or name.startswith(RESERVED_PARAM_PREFIXES):
        out.append("param_reserved")
    return out


def user_property_name_breaks(name: str) -> list[str]:
    """At most one of: user_property_name, user_property_name_length, user_property_reserved."""
    if not NAME.match(name):
        return ["user_property_name"]
    if len(name) > MAX_USER_PROPERTY_NAME:
        return ["user_property_name_length"]
    if name in RESERVED_USER_PROPERTIES or name.startswith(RESERVED_USER_PROPERTY_PREFIXES):
        return ["user_property_reserved"]
    return []


def param_value_breaks(value: object, *, identifier: bool = False) -> list[str]:
    """At most one of: param_scalar, param_value_length, pii (for a param other than items).

    `identifier` is true for params that carry record ids (`transaction_id`, `*_id`): a bare
    run of digits there is a CRM id, not a phone number (pii.py explains).
    """
    if not (isinstance(value, str) or is_number(value)):
        return ["param_scalar"]
    if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
        return ["param_value_length"]
    if looks_like_pii(value, identifier=identifier):
        return ["pii"]
    return []


def user_property_value_breaks(value: object) -> list[str]:
    """At most one of: user_property_value, user_property_length, pii."""
    if not (isinstance(value, str) or is_number(value)):
        return ["user_property_value"]
    if isinstance(value, str) and len(value) > MAX_USER_PROPERTY_VALUE:
        return ["user_property_length"]
    if looks_like_pii(value):
        return ["pii"]
    return []


def is_identifier_param(name: str) -> bool:
    """Params whose values are record ids by their name: GA4's own `transaction_id`,
    `item_id`, `session_id`, and a mapping's `lead_id` or `deal_id`."""
    return name.endswith("_id")


def too_many_params(count: int) -> bool:
    return count > MAX_PARAMS


def too_many_user_properties(count: int) -> bool:
    return count > MAX_USER_PROPERTIES


def encoded_size(payload: JsonValue) -> int:
    """Bytes of the compact UTF-8 JSON; raises UnicodeEncodeError on a lone surrogate."""
    return len(COMPACT_JSON.encode(payload).encode("utf-8"))
