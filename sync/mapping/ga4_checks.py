"""GA4's naming and value rules, checked on a mapping before anything is sent.

Pure functions over one parsed rule (or the file's user properties). GA4 itself would accept
most of these silently and then drop or mangle the data (ga4-mp.md), so a mapping that breaks
them is refused at validate time, with the rule and a fix. Whether a name or fixed value breaks
a GA4 rule is decided by ga4/field_rules.py, the same functions the payload check uses, so a
mapping that validates cannot build an event the payload check refuses for the same value;
this module only says it in a mapping author's words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date

from ga4sync.core.yamlsource import Loc
from ga4sync.ga4.field_rules import (
    event_name_breaks,
    is_currency_code,
    is_identifier_param,
    is_number,
    param_name_breaks,
    param_value_breaks,
    too_many_params,
    too_many_user_properties,
    user_property_name_breaks,
    user_property_value_breaks,
)
from ga4sync.ga4.limits import (
    MAX_NAME,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME,
    MAX_USER_PROPERTY_VALUE,
)
from ga4sync.mapping.checks import Finding
from ga4sync.mapping.model import FieldParam, LiteralParam, Rule

ParamSpecValue = FieldParam | LiteralParam | str | int | float
"""One param or user property as the mapping model holds it (model.ParamSpec, unwrapped)."""

RECOMMENDED_EVENTS = frozenset(
    """purchase refund generate_lead qualify_lead disqualify_lead working_lead close_convert_lead
    close_unconvert_lead sign_up login add_payment_info add_shipping_info add_to_cart
    begin_checkout view_item""".split()  # noqa: SIM905
)


def ga4_name_for(text: str, limit: int = MAX_NAME) -> str:
    """A GA4-legal name close to what the person typed: `Closed Won!` -> `closed_won`."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "crm_event"
    if not name[0].isalpha():
        name = "crm_" + name
    return name[:limit]


# -- one rule ----------------------------------------------------------------------------------
def check_rule(index: int, rule: Rule, default_currency: str | None) -> list[Finding]:
    """GA4 naming and value rules for one rule's event and params."""
    base: Loc = ("rules", index)
    out = _check_event_name(base + ("event",), rule.event)
    if too_many_params(len(rule.params)):
        out.append(
            Finding(
                base + ("params",),
                f"{len(rule.params)} params; GA4 keeps at most {MAX_PARAMS} per event",
                "GA4 EXCEEDED_MAX_ENTITIES",
                "remove the params you do not report on",
            )
        )
    for name, spec in rule.params.items():
        out += _check_param(base + ("params", name), name, spec)
    out += _check_money(base, rule, default_currency)
    for kind, values in (("from", rule.from_values()), ("to", rule.to_values())):
        seen: set[str] = set()
        for j, value in enumerate(values):
            key = value.lower()
            if not value:
                out.append(
                    Finding(
                        base + (kind, j),
                        "empty stage name",
                        "stages are named by label or id",
                        "write the stage label, its id, or `*`",
                    )
                )
            elif key in seen:
                out.append(
                    Finding(
                        base + (kind, j),
                        f"stage `{value}` is listed twice",
                        "each stage once per list",
                        "remove the repeat",
                    )
                )
            seen.add(key)
    return out


def _check_event_name(loc: Loc, event: str) -> list[Finding]:
    breaks = event_name_breaks(event)
    if "event_name" in breaks:
        return [
            Finding(
                loc,
                f"event name `{event}` is not allowed",
                "GA4 NAME_INVALID: start with a letter, then only letters, digits and _",
                f"use `{ga4_name_for(event)}`",
            )
        ]
    if "event_name_length" in breaks:
        return [
            Finding(
                loc,
                f"event name `{event}` is {len(event)} characters long",
                f"GA4 VALUE_OUT_OF_BOUNDS: at most {MAX_NAME}",
                f"shorten it, e.g. `{event[:MAX_NAME]}`",
            )
        ]
    if "event_name_reserved" in breaks:
        return [
            Finding(
                loc,
                f"event name `{event}` is reserved by GA4",
                "GA4 NAME_RESERVED",
                f"use a recommended event such as qualify_lead, or your own, e.g. `crm_{event}`",
            )
        ]
    if event not in RECOMMENDED_EVENTS and event.lower() in RECOMMENDED_EVENTS:
        return [
            Finding(
                loc,
                f"event name `{event}` differs from GA4's recommended `{event.lower()}` only "
                "in capitals",
                "GA4 event names are case-sensitive; only the lowercase one gets GA4's reports",
                f"write `{event.lower()}`",
            )
        ]
    return []


def _check_param(loc: Loc, name: str, spec: ParamSpecValue) -> list[Finding]:
    out: list[Finding] = []
    name_breaks = param_name_breaks(name)
    if "param_name" in name_breaks:
        return [
            Finding(
                loc,
                f"param name `{name}` is not allowed",
                "GA4 NAME_INVALID: start with a letter, then only letters, digits and _",
                f"use `{ga4_name_for(name)}`",
            )
        ]
    if "param_name_length" in name_breaks:
        out.append(
            Finding(
                loc,
                f"param name `{name}` is {len(name)} characters long",
                f"GA4 VALUE_OUT_OF_BOUNDS: at most {MAX_NAME}",
                f"shorten it, e.g. `{name[:MAX_NAME]}`",
            )
        )
    if "param_reserved" in name_breaks:
        out.append(
            Finding(
                loc,
                f"param name `{name}` is reserved by GA4",
                "GA4 NAME_RESERVED: no firebase_conversion, and no _, firebase_, ga_, google_, "
                "gtag. prefix",
                f"use `crm_{name.lstrip('_')}`",
            )
        )
    if name == "items":
        out.append(
            Finding(
                loc,
                "`items` needs a list of products, which a mapping cannot build",
                "mapping params are single values",
                "send product details as separate params, e.g. item_name",
            )
        )
        return out
    if isinstance(spec, FieldParam):
        return out + _check_default(loc, spec)
    literal = spec.value if isinstance(spec, LiteralParam) else spec
    value_breaks = param_value_breaks(literal, identifier=is_identifier_param(name))
    if "param_scalar" in value_breaks and name != "value":
        # (`value` has its own check with the other money params)
        out.append(
            Finding(
                loc,
                f"the fixed value `{literal}` is not a number GA4 can take",
                "param values are text or finite numbers",
                "write a plain number such as 0 or 100.5",
            )
        )
    if "param_value_length" in value_breaks:
        out.append(
            Finding(
                loc,
                f"the fixed value is {len(str(literal))} characters long",
                f"GA4 VALUE_OUT_OF_BOUNDS: param values at most {MAX_PARAM_VALUE} characters",
                "shorten it",
            )
        )
    if "pii" in value_breaks:
        out.append(
            Finding(
                loc,
                "the fixed value looks like an email address or phone number",
                "GA4 forbids personal data in params",
                "use email_field / phone_field, which are sent hashed in user_data",
            )
        )
    return out


def _check_default(loc: Loc, spec: FieldParam) -> list[Finding]:
    default = spec.default
    if default is None:
        return []
    problem = ""
    if spec.type == "number" and not _is_number(default):
        problem = f"default `{default}` is not a number"
    elif spec.type == "currency" and not is_currency_code(default):
        problem = f"default `{default}` is not a currency code in capitals like USD"
    elif spec.type == "date" and not _is_date(default):
        problem = f"default `{default}` is not a date like 2024-05-31"
    if not problem:
        return []
    return [
        Finding(
            loc + ("default",),
            problem,
            f"a `type: {spec.type}` param's default must be of that type",
            "fix the default or the type",
        )
    ]


def _is_number(value: str | float | int) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = float(str(value).replace(",", ""))
    except ValueError:
        return False
    return math.isfinite(number)


def _is_date(value: str | float | int) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _check_money(base: Loc, rule: Rule, default_currency: str | None) -> list[Finding]:
    """value/currency/transaction_id: what GA4 needs to count revenue, and dedup purchases."""
    out: list[Finding] = []
    params = rule.params
    value = params.get("value")
    if isinstance(value, FieldParam) and value.type != "number":
        out.append(
            Finding(
                base + ("params", "value"),
                f"`value` is read as {value.type}",
                "GA4 reads `value` as a number; text makes the event revenue-less",
                "add `type: number`",
            )
        )
    elif value is not None and not isinstance(value, FieldParam):
        literal = value.value if isinstance(value, LiteralParam) else value
        if not is_number(literal):
            out.append(
                Finding(
                    base + ("params", "value"),
                    f"fixed `value` {literal!r} is not a number",
                    "GA4 reads `value` as a number",
                    "write a number without quotes, e.g. 100",
                )
            )
    currency = params.get("currency")
    if isinstance(currency, FieldParam) and currency.type != "currency":
        out.append(
            Finding(
                base + ("params", "currency"),
                f"`currency` is read as {currency.type}",
                "GA4 needs an ISO 4217 code in capitals",
                "add `type: currency` (it checks and capitalises the code)",
            )
        )
    elif currency is not None and not isinstance(currency, FieldParam):
        literal = currency.value if isinstance(currency, LiteralParam) else currency
        if not is_currency_code(literal):
            out.append(
                Finding(
                    base + ("params", "currency"),
                    f"fixed `currency` {literal!r} is not an ISO 4217 code in capitals",
                    "GA4 needs an ISO 4217 code in capitals",
                    "write e.g. USD or EUR",
                )
            )
    if value is not None and currency is None and not default_currency:
        out.append(
            Finding(
                base + ("params", "value"),
                "`value` without a currency",
                "GA4 VALUE_REQUIRED: without currency GA4 computes no revenue",
                "add a `currency` param, or `currency: USD` at the top of the file",
            )
        )
    tid = params.get("transaction_id")
    if rule.event == "purchase" and tid is None:
        out.append(
            Finding(
                base + ("event",),
                "`purchase` has no transaction_id param",
                "GA4 deduplicates purchases only by transaction_id",
                "add `transaction_id: {field: Id}` (the record id is unique)",
            )
        )
    elif tid is not None and not isinstance(tid, FieldParam):
        out.append(
            Finding(
                base + ("params", "transaction_id"),
                "transaction_id is a fixed value, the same for every record",
                "GA4 merges purchases that share a transaction_id",
                "read it from the record, e.g. `{field: Id}`",
            )
        )
    if rule.resend_if_unknown and not (rule.event == "purchase" and tid is not None):
        out.append(
            Finding(
                base + ("resend_if_unknown",),
                "resend_if_unknown is on for an event GA4 cannot deduplicate",
                "only `purchase` with a transaction_id may be resent safely",
                "remove `resend_if_unknown: true`",
            )
        )
    return out


# -- user properties ----------------------------------------------------------------------------
def check_user_properties(props: Mapping[str, ParamSpecValue]) -> list[Finding]:
    out: list[Finding] = []
    if too_many_user_properties(len(props)):
        out.append(
            Finding(
                ("user_properties",),
                f"{len(props)} user properties; GA4 keeps at most {MAX_USER_PROPERTIES}",
                "GA4 EXCEEDED_MAX_ENTITIES",
                "remove some",
            )
        )
    for name, spec in props.items():
        loc: Loc = ("user_properties", name)
        name_breaks = user_property_name_breaks(name)
        if "user_property_name" in name_breaks or "user_property_name_length" in name_breaks:
            out.append(
                Finding(
                    loc,
                    f"user property name `{name}` is not allowed",
                    f"GA4 NAME_INVALID: a letter, then letters, digits or _, at most "
                    f"{MAX_USER_PROPERTY_NAME} characters",
                    f"use `{ga4_name_for(name, MAX_USER_PROPERTY_NAME)}`",
                )
            )
        elif "user_property_reserved" in name_breaks:
            out.append(
                Finding(
                    loc,
                    f"user property name `{name}` is reserved by GA4",
                    "GA4 NAME_RESERVED",
                    f"use `crm_{name.lstrip('_')}`"[: MAX_USER_PROPERTY_NAME + 7],
                )
            )
        if isinstance(spec, FieldParam):
            if spec.type == "currency":
                out.append(
                    Finding(
                        loc + ("type",),
                        "user properties cannot be of type currency",
                        "GA4 user properties are text or numbers",
                        "use `type: string`",
                    )
                )
            continue
        literal = spec.value if isinstance(spec, LiteralParam) else spec
        value_breaks = user_property_value_breaks(literal)
        if "user_property_value" in value_breaks:
            out.append(
                Finding(
                    loc,
                    f"the fixed value `{literal}` is not a number GA4 can take",
                    "user property values are text or finite numbers",
                    "write a plain number such as 0 or 100.5",
                )
            )
        if "user_property_length" in value_breaks:
            out.append(
                Finding(
                    loc,
                    f"the fixed value is {len(str(literal))} characters long",
                    f"GA4 VALUE_OUT_OF_BOUNDS: user property values at most "
                    f"{MAX_USER_PROPERTY_VALUE} characters",
                    "shorten it",
                )
            )
        if "pii" in value_breaks:
            out.append(
                Finding(
                    loc,
                    "the fixed value looks like an email address or phone number",
                    "GA4 forbids personal data in user properties",
                    "use email_field / phone_field, which are sent hashed in user_data",
                )
            )
    return out
