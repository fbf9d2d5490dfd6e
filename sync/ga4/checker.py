"""The walk over one Measurement Protocol payload behind `rules.validate_payload`.

Kept apart from the rule catalogue (catalogue.py) so each stays readable: the catalogue says
what the rules are and which mode applies them, field_rules.py how one name or value breaks
them, and this module where in a payload they are broken.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ga4sync.core.clock import to_micros
from ga4sync.ga4.catalogue import PARSE_ERROR, RULES, Mode, ValidationMessage
from ga4sync.ga4.event_checks import EventChecks, show
from ga4sync.ga4.field_rules import (
    encoded_size,
    is_client_id,
    too_many_user_properties,
    user_property_name_breaks,
    user_property_value_breaks,
)
from ga4sync.ga4.limits import (
    ADDRESS_KEYS,
    BACKDATE_WINDOW,
    CONSENT_KEYS,
    FUTURE_TOLERANCE,
    MAX_ADDRESSES,
    MAX_BODY_BYTES,
    MAX_EVENTS,
    MAX_HASHED_EMAILS,
    MAX_HASHED_PHONES,
    MAX_USER_ID,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME,
    MAX_USER_PROPERTY_VALUE,
    SHA256_HEX,
    TOP_LEVEL_KEYS,
    USER_DATA_KEYS,
)
from ga4sync.ga4.pii import looks_like_pii

INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
_FUTURE_TOLERANCE_US = int(FUTURE_TOLERANCE.total_seconds() * 1_000_000)
_BACKDATE_WINDOW_US = int(BACKDATE_WINDOW.total_seconds() * 1_000_000)


class PayloadChecker(EventChecks):
    """Walks one payload and collects problems of the rules the mode applies."""

    def __init__(self, mode: Mode, now: datetime, body_bytes: int | None = None) -> None:
        self.enforce = mode == Mode.ENFORCE
        self.now_us = to_micros(now)
        self.body_bytes = body_bytes
        self.out: list[ValidationMessage] = []

    def add(self, rule: str, path: str, description: str, code: str) -> None:
        if RULES[rule].enforce_only and not self.enforce:
            return
        self.out.append(ValidationMessage(path, description, code, rule))

    def payload(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            self.add("json_object", "", f"{PARSE_ERROR} Expected a JSON object.", "VALUE_INVALID")
            return
        for key in payload:
            if key not in TOP_LEVEL_KEYS:
                self.add(
                    "unknown_field",
                    "",
                    f"{PARSE_ERROR} {show(key)}: Cannot find field.",
                    "VALUE_INVALID",
                )
        self.ids(payload)
        if payload.get("timestamp_micros") is not None:
            self.timestamp(payload["timestamp_micros"], "timestamp_micros")
        self.user_properties(payload.get("user_properties"))
        self.consent(payload)
        self.user_data(payload.get("user_data"))
        events = payload.get("events")
        if not isinstance(events, list) or not events:
            self.add(
                "events_required",
                "events",
                "Measurement requires at least one event.",
                "VALUE_REQUIRED",
            )
        else:
            self.events_count(events)
            for i, event in enumerate(events):
                self.event(i, event)
        try:
            size = encoded_size(payload)
        except UnicodeEncodeError as exc:
            self.add(
                "unicode",
                "",
                f"{PARSE_ERROR} Invalid UTF-8: a string holds a lone surrogate "
                f"[\\u{ord(exc.object[exc.start]):04x}].",
                "VALUE_INVALID",
            )
            return
        size = self.body_bytes if self.body_bytes is not None else size
        if size >= MAX_BODY_BYTES:
            self.add(
                "body_size",
                "",
                f"Measurement payload is [{size}] bytes. It must be smaller than "
                f"[{MAX_BODY_BYTES}] bytes.",
                "VALUE_OUT_OF_BOUNDS",
            )

    def times(self, body: dict[str, Any], size: int) -> None:
        """Only what may have changed for a body whose events each passed `payload` alone,
        timestamps left out (capture): the timestamps against now, and the size and event
        count of this grouping."""
        if body.get("timestamp_micros") is not None:
            self.timestamp(body["timestamp_micros"], "timestamp_micros")
        props = body.get("user_properties")
        if isinstance(props, dict):
            for prop in props.values():
                if isinstance(prop, dict) and prop.get("timestamp_micros") is not None:
                    self.timestamp(prop["timestamp_micros"], "timestamp_micros", "User property")
        events = body["events"]
        self.events_count(events)
        for i, event in enumerate(events):
            if event.get("timestamp_micros") is not None:
                at = f"Event at index: [{i}]"
                self.timestamp(event["timestamp_micros"], "timestamp_micros", at)
        if size >= MAX_BODY_BYTES:
            self.add(
                "body_size",
                "",
                f"Measurement payload is [{size}] bytes. It must be smaller than "
                f"[{MAX_BODY_BYTES}] bytes.",
                "VALUE_OUT_OF_BOUNDS",
            )

    def events_count(self, events: list[Any]) -> None:
        if len(events) > MAX_EVENTS:
            self.add(
                "events_count",
                "events",
                f"Measurement has [{len(events)}] events. The maximum is [{MAX_EVENTS}].",
                "EXCEEDED_MAX_ENTITIES",
            )

    def ids(self, payload: dict[str, Any]) -> None:
        cid = payload.get("client_id")
        if cid is None and payload.get("app_instance_id") is None:
            self.add(
                "client_id_required",
                "client_id",
                "Measurement requires a client_id.",  # Google's words (tests/contracts/ga4)
                "VALUE_REQUIRED",
            )
        elif cid is not None:
            if not isinstance(cid, str) or not cid:
                self.add(
                    "client_id_type",
                    "client_id",
                    f"client_id [{show(cid)}] must be a non-empty string.",
                    "VALUE_INVALID",
                )
            elif not is_client_id(cid):
                self.add(
                    "client_id_format",
                    "client_id",
                    f"client_id [{show(cid)}] has invalid format. "
                    "It should be in <number>.<number> format.",
                    "VALUE_INVALID",
                )
        uid = payload.get("user_id")
        if uid is None:
            return
        if not isinstance(uid, str):
            self.add("user_id_type", "user_id", "user_id must be a string.", "VALUE_INVALID")
        elif len(uid) > MAX_USER_ID:
            self.add(
                "user_id_length",
                "user_id",
                f"user_id has [{len(uid)}] characters. The maximum is [{MAX_USER_ID}].",
                "VALUE_OUT_OF_BOUNDS",
            )
        elif looks_like_pii(uid):
            self.add(
                "pii",
                "user_id",
                "user_id looks like an email address or phone number; GA4 forbids PII "
                "(send it hashed in user_data instead).",
                "VALUE_INVALID",
            )

    def timestamp(self, ts: Any, path: str, where: str = "Measurement") -> None:
        if not isinstance(ts, int) or isinstance(ts, bool):
            # int64 in JSON may be a string ("1700000000000000"), ASCII digits only.
            if not (isinstance(ts, str) and INT64_TEXT.fullmatch(ts)):
                self.add(
                    "timestamp_type",
                    path,
                    f"{where} {path} [{show(ts)}] must be an integer.",
                    "VALUE_INVALID",
                )
                return
            ts = int(ts)
        if 10**12 <= ts < 10**14:
            self.add(
                "timestamp_millis",
                path,
                f"{where} {path} [{ts}] looks like milliseconds; GA4 wants microseconds "
                "(multiply by 1000). GA4 would read it as a time in 1970.",
                "VALUE_INVALID",
            )
        elif ts > self.now_us + _FUTURE_TOLERANCE_US:
            self.add(
                "timestamp_future",
                path,
                f"{where} {path} [{ts}] is in the future.",
                "VALUE_INVALID",
            )
        elif ts < self.now_us - _BACKDATE_WINDOW_US:
            self.add(
                "timestamp_too_old",
                path,
                f"Measurement {path} has timestamp too far in the past. Measurement protocol "
                f"only supports timestamps [72h] into the past. The current time in UNIX "
                f"microseconds is [{self.now_us}].",
                "VALUE_INVALID",
            )

    def user_properties(self, props: Any) -> None:
        if props is None:
            return
        path = "user_properties"
        if not isinstance(props, dict):
            self.add(
                "user_properties_type", path, "user_properties must be an object.", "VALUE_INVALID"
            )
            return
        if too_many_user_properties(len(props)):
            self.add(
                "user_properties_count",
                path,
                f"Measurement has [{len(props)}] user properties. "
                f"The maximum is [{MAX_USER_PROPERTIES}].",
                "EXCEEDED_MAX_ENTITIES",
            )
        for name, body in props.items():
            for rule in user_property_name_breaks(name):
                description, code = {
                    "user_property_name": (
                        f"User property has invalid name [{show(name)}]. Names must start with "
                        "an alphabetic character.",
                        "NAME_INVALID",
                    ),
                    "user_property_name_length": (
                        f"User property name [{show(name)}] is longer than "
                        f"[{MAX_USER_PROPERTY_NAME}] characters.",
                        "VALUE_OUT_OF_BOUNDS",
                    ),
                    "user_property_reserved": (
                        f"User property has name [{show(name)}] which is reserved.",
                        "NAME_RESERVED",
                    ),
                }[rule]
                self.add(rule, path, description, code)
            if not isinstance(body, dict) or "value" not in body:
                self.add(
                    "user_properties_type",
                    path,
                    f"User property [{show(name)}] must be an object with a value.",
                    "VALUE_REQUIRED",
                )
                continue
            value = body["value"]
            if body.get("timestamp_micros") is not None:
                self.timestamp(body["timestamp_micros"], "timestamp_micros", "User property")
            for rule in user_property_value_breaks(value):
                description, code = {
                    "user_property_value": (
                        f"User property [{show(name)}] has invalid value [{show(value)}]. "
                        "Values must be strings or numbers.",
                        "VALUE_INVALID",
                    ),
                    "user_property_length": (
                        f"User property [{show(name)}] value is longer than "
                        f"[{MAX_USER_PROPERTY_VALUE}] characters.",
                        "VALUE_OUT_OF_BOUNDS",
                    ),
                    "pii": (
                        f"User property [{show(name)}] looks like an email address or phone "
                        "number; GA4 forbids PII.",
                        "VALUE_INVALID",
                    ),
                }[rule]
                self.add(rule, path, description, code)

    def consent(self, payload: dict[str, Any]) -> None:
        npa = payload.get("non_personalized_ads")
        if npa is not None and not isinstance(npa, bool):
            self.add(
                "non_personalized_ads",
                "non_personalized_ads",
                f"non_personalized_ads [{show(npa)}] must be true or false.",
                "VALUE_INVALID",
            )
        consent = payload.get("consent")
        if consent is None:
            return
        if not isinstance(consent, dict):
            self.add("consent", "consent", "consent must be an object.", "VALUE_INVALID")
            return
        for key, value in consent.items():
            if key not in CONSENT_KEYS:
                self.add(
                    "unknown_field",
                    "",
                    f"{PARSE_ERROR} (consent) {show(key)}: Cannot find field.",
                    "VALUE_INVALID",
                )
            elif value not in ("GRANTED", "DENIED"):
                self.add(
                    "consent",
                    "consent",
                    f"consent.{key} [{show(value)}] must be GRANTED or DENIED.",
                    "VALUE_INVALID",
                )

    def user_data(self, data: Any) -> None:
        if data is None:
            return
        if not isinstance(data, dict):
            self.add(
                "unknown_field",
                "",
                f"{PARSE_ERROR} user_data: Expected an object.",
                "VALUE_INVALID",
            )
            return
        for key in data:
            if key not in USER_DATA_KEYS:
                self.add(
                    "unknown_field",
                    "",
                    f"{PARSE_ERROR} (user_data) {show(key)}: Cannot find field.",
                    "VALUE_INVALID",
                )
        for key, limit in (
            ("sha256_email_address", MAX_HASHED_EMAILS),
            ("sha256_phone_number", MAX_HASHED_PHONES),
        ):
            raw = data.get(key)
            values = [] if raw is None else raw if isinstance(raw, list) else [raw]
            if len(values) > limit:
                self.add(
                    "user_data_count",
                    "user_data",
                    f"user_data.{key} has [{len(values)}] values. The maximum is [{limit}].",
                    "EXCEEDED_MAX_ENTITIES",
                )
            for v in values:
                self._hashed(f"user_data.{key}", v)
        raw = data.get("address")
        addresses = [] if raw is None else raw if isinstance(raw, list) else [raw]
        if len(addresses) > MAX_ADDRESSES:
            self.add(
                "user_data_count",
                "user_data",
                f"user_data.address has [{len(addresses)}] values. "
                f"The maximum is [{MAX_ADDRESSES}].",
                "EXCEEDED_MAX_ENTITIES",
            )
        for address in addresses:
            if not isinstance(address, dict):
                self.add(
                    "unknown_field",
                    "",
                    f"{PARSE_ERROR} user_data.address: Expected an object, got [{show(address)}].",
                    "VALUE_INVALID",
                )
                continue
            for key, value in address.items():
                if key not in ADDRESS_KEYS:
                    self.add(
                        "unknown_field",
                        "",
                        f"{PARSE_ERROR} (user_data.address) {show(key)}: Cannot find field.",
                        "VALUE_INVALID",
                    )
                elif key.startswith("sha256_"):
                    self._hashed(f"user_data.address.{key}", value)
                elif not isinstance(value, str):
                    self.add(
                        "unknown_field",
                        "",
                        f"{PARSE_ERROR} (user_data.address) {show(key)}: Expected a string, got "
                        f"[{show(value)}].",
                        "VALUE_INVALID",
                    )

    def _hashed(self, where: str, value: Any) -> None:
        if not (isinstance(value, str) and SHA256_HEX.match(value)):
            shown = "a raw value" if isinstance(value, str) else show(value)
            self.add(
                "user_data_hashed",
                "user_data",
                f"{where} must be a lowercase hex SHA-256 digest, not {shown}; "
                "normalise and hash it first.",
                "VALUE_INVALID",
            )
