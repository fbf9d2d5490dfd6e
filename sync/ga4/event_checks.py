"""Per-event checks (name, params, items, money) of the payload walk in checker.py."""

from __future__ import annotations

import json
from typing import Any

from ga4sync.ga4.catalogue import PARSE_ERROR
from ga4sync.ga4.field_rules import (
    event_name_breaks,
    is_currency_code,
    is_identifier_param,
    is_number,
    param_name_breaks,
    param_value_breaks,
    too_many_params,
)
from ga4sync.ga4.limits import (
    EVENT_KEYS,
    ITEM_STANDARD_KEYS,
    MAX_ITEM_CUSTOM_PARAMS,
    MAX_ITEMS,
    MAX_NAME,
    MAX_PARAM_VALUE,
    MAX_PARAMS,
)
from ga4sync.ga4.pii import looks_like_pii


def show(value: Any, limit: int = 60) -> str:
    """A value for a message: JSON for non-strings, cut short so a 20 MB value stays readable."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (RecursionError, ValueError):
            text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EventChecks:
    """Mixin: needs `add(rule, path, description, code)` and `timestamp(ts, path, where)`."""

    def add(self, rule: str, path: str, description: str, code: str) -> None:
        raise NotImplementedError

    def timestamp(self, ts: Any, path: str, where: str = "Measurement") -> None:
        raise NotImplementedError

    def event(self, i: int, event: Any) -> None:
        at = f"Event at index: [{i}]"
        if not isinstance(event, dict):
            self.add("event_type", "events", f"{at} must be an object.", "VALUE_INVALID")
            return
        for key in event:
            if key not in EVENT_KEYS:
                self.add(
                    "unknown_field",
                    "",
                    f"{PARSE_ERROR} (events[{i}]) {show(key)}: Cannot find field.",
                    "VALUE_INVALID",
                )
        name = event.get("name")
        if not isinstance(name, str) or not name:
            self.add("event_name_required", "events", f"{at} requires a name.", "VALUE_REQUIRED")
        else:
            for rule in event_name_breaks(name):
                description, code = {
                    "event_name": (
                        f"{at} has invalid name [{show(name)}]. Names must start with an "
                        "alphabetic character.",
                        "NAME_INVALID",
                    ),
                    "event_name_length": (
                        f"{at} has name [{show(name)}] which is longer than [{MAX_NAME}] "
                        "characters.",
                        "VALUE_OUT_OF_BOUNDS",
                    ),
                    "event_name_reserved": (
                        f"{at} has name [{show(name)}] which is reserved.",
                        "NAME_RESERVED",
                    ),
                }[rule]
                self.add(rule, "events", description, code)
        if event.get("timestamp_micros") is not None:
            self.timestamp(event["timestamp_micros"], "timestamp_micros", at)
        params = event.get("params")
        if params is None:
            return
        if not isinstance(params, dict):
            self.add(
                "params_type", "events.params", f"{at} params must be an object.", "VALUE_INVALID"
            )
            return
        if too_many_params(len(params)):
            self.add(
                "params_count",
                "events.params",
                f"{at} has [{len(params)}] params. The maximum is [{MAX_PARAMS}].",
                "EXCEEDED_MAX_ENTITIES",
            )
        for pname, value in params.items():
            self.param(at, pname, value)
        self.money(at, name, params)

    def param(self, at: str, pname: str, value: Any) -> None:
        path = "events.params"
        for rule in param_name_breaks(pname):
            description, code = {
                "param_name": (
                    f"{at} has invalid param name [{show(pname)}]. Names must start with an "
                    "alphabetic character.",
                    "NAME_INVALID",
                ),
                "param_name_length": (
                    f"{at} has param name [{show(pname)}] which is longer than [{MAX_NAME}] "
                    "characters.",
                    "VALUE_OUT_OF_BOUNDS",
                ),
                "param_reserved": (
                    f"{at} has param name [{show(pname)}] which is reserved.",
                    "NAME_RESERVED",
                ),
            }[rule]
            self.add(rule, path, description, code)
        if pname == "items":
            self.items(at, value)
            return
        for rule in param_value_breaks(value, identifier=is_identifier_param(pname)):
            description, code = {
                "param_scalar": (
                    f"{at} has param [{show(pname)}] with invalid value [{show(value)}]. "
                    "Values must be strings or numbers.",
                    "VALUE_INVALID",
                ),
                "param_value_length": (
                    f"{at} has param [{show(pname)}] with a value longer than "
                    f"[{MAX_PARAM_VALUE}] characters.",
                    "VALUE_OUT_OF_BOUNDS",
                ),
                "pii": (
                    f"{at} has param [{show(pname)}] that looks like an email address or phone "
                    "number; GA4 forbids PII.",
                    "VALUE_INVALID",
                ),
            }[rule]
            self.add(rule, path, description, code)

    def items(self, at: str, items: Any) -> None:
        path = "events.params.items"
        if not isinstance(items, list):
            self.add("items_type", path, f"{at} items must be a list.", "VALUE_INVALID")
            return
        if len(items) > MAX_ITEMS:
            self.add(
                "items_count",
                path,
                f"{at} has [{len(items)}] items. The maximum is [{MAX_ITEMS}].",
                "EXCEEDED_MAX_ENTITIES",
            )
        for j, item in enumerate(items):
            if not isinstance(item, dict):
                self.add(
                    "items_type",
                    path,
                    f"{at} item at index [{j}] must be an object.",
                    "VALUE_INVALID",
                )
                continue
            if all(item.get(k) in (None, "") for k in ("item_id", "item_name")):
                self.add(
                    "item_id_or_name",
                    path,
                    f"{at} item at index [{j}] requires item_id or item_name.",
                    "VALUE_REQUIRED",
                )
            custom = [k for k in item if k not in ITEM_STANDARD_KEYS]
            if len(custom) > MAX_ITEM_CUSTOM_PARAMS:
                self.add(
                    "item_custom_params",
                    path,
                    f"{at} item at index [{j}] has [{len(custom)}] custom params. "
                    f"The maximum is [{MAX_ITEM_CUSTOM_PARAMS}].",
                    "EXCEEDED_MAX_ENTITIES",
                )
            for key, value in item.items():
                if not (isinstance(value, str) or is_number(value)):
                    self.add(
                        "param_scalar",
                        path,
                        f"{at} item at index [{j}] has [{show(key)}] with invalid value "
                        f"[{show(value)}].",
                        "VALUE_INVALID",
                    )
                elif looks_like_pii(value, identifier=is_identifier_param(key)):
                    self.add(
                        "pii",
                        path,
                        f"{at} item at index [{j}] has [{show(key)}] that looks like an email "
                        "address or phone number; GA4 forbids PII.",
                        "VALUE_INVALID",
                    )

    def money(self, at: str, name: Any, params: dict[str, Any]) -> None:
        path = "events.params"
        if "value" in params:
            if not is_number(params["value"]):
                self.add(
                    "value_number",
                    path,
                    f"{at} has param [value] [{show(params['value'])}] which is not a number.",
                    "VALUE_INVALID",
                )
            if "currency" not in params:
                self.add(
                    "value_currency",
                    path,
                    f"{at} has a value without currency; GA4 computes no revenue from it "
                    "and does not export it to Google Ads.",
                    "VALUE_REQUIRED",
                )
        cur = params.get("currency")
        if cur is not None and not is_currency_code(cur):
            self.add(
                "currency_code",
                path,
                f"{at} has currency [{show(cur)}] which is not an uppercase ISO 4217 code.",
                "VALUE_INVALID",
            )
        tid = params.get("transaction_id")
        if name == "purchase" and tid is not None and str(tid).strip() == "":
            self.add(
                "transaction_id_empty",
                path,
                f"{at} is a purchase with an empty transaction_id; GA4 would merge it "
                "with every other purchase that has one.",
                "VALUE_INVALID",
            )
