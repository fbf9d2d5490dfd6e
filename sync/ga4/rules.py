"""Validate a Measurement Protocol payload or raw body as Google's validation server would.

Pure: payload -> messages. ga4sync sends only what passes in ENFORCE_RECOMMENDATIONS mode,
because production (RELAXED) silently drops or alters what breaks a rule and still answers 2xx.

This is the entry point callers use; the rule catalogue is catalogue.py, the limits limits.py,
the one implementation of each rule on a single value field_rules.py (shared with mapping
validation), and the walk over a payload checker.py. Descriptions use Google's wording where it
is known (ga4-mp.md "Real descriptions seen"), and `fieldPath` is as coarse as Google's.
Everything is collected; `debug_response` shows the first, as the validation server does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ga4sync.ga4.catalogue import (
    BODY_RULES,
    PARSE_ERROR,
    RULES,
    Mode,
    ValidationMessage,
    debug_response,
)
from ga4sync.ga4.checker import PayloadChecker
from ga4sync.ga4.field_rules import encoded_size
from ga4sync.ga4.limits import BACKDATE_WINDOW, MAX_BODY_BYTES

__all__ = [
    "BACKDATE_WINDOW",
    "BODY_RULES",
    "MAX_BODY_BYTES",
    "RULES",
    "Mode",
    "NotJson",
    "ParsedBody",
    "ValidationMessage",
    "debug_response",
    "encoded_size",
    "parse_body",
    "validate_body",
    "validate_payload",
    "validate_times",
]


def validate_payload(
    payload: Any, *, mode: Mode, now: datetime, body_bytes: int | None = None
) -> list[ValidationMessage]:
    """Every problem, in Google's order of discovery; callers show the first like Google does.

    `body_bytes` is the size of the body as it will be (or was) sent; without it the size is
    that of the compact UTF-8 encoding ga4sync sends.
    """
    check = PayloadChecker(mode, now, body_bytes)
    check.payload(payload)
    return check.out


def validate_times(
    body: dict[str, Any], *, mode: Mode, now: datetime, body_bytes: int
) -> list[ValidationMessage]:
    """The rules a request can break although each of its events passed `validate_payload`
    alone, without its timestamp, in ENFORCE mode (as capture checks them): the timestamps
    against `now`, the event count and the size of this body (`body_bytes`).

    An empty answer means `validate_payload` would find nothing either, as long as the stored
    payloads are those capture checked; with any problem, run `validate_payload` for the
    messages in Google's order.
    """
    check = PayloadChecker(mode, now, body_bytes)
    check.times(body, body_bytes)
    return check.out


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
