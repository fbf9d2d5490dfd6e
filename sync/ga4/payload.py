"""Build Measurement Protocol bodies: one identity per request, 1-25 events, < 130,000 bytes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ga4sync.core.clock import to_micros
from ga4sync.core.model import Ga4Event, Identity
from ga4sync.ga4.field_rules import COMPACT_JSON
from ga4sync.ga4.limits import MAX_BODY_BYTES, MAX_EVENTS

_SORTED_COMPACT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""`json.dumps(..., sort_keys=True, separators=(",", ":"))`, built once (called per event)."""

SIZE_MARGIN = 2_000
"""Room left under GA4's byte limit for the validation_behavior key and rounding."""


def stored_payload(identity: Identity, event: Ga4Event) -> dict[str, Any]:
    """What the outbox keeps for one transition: secret-free and enough to rebuild the request."""
    out: dict[str, Any] = {"client_id": identity.client_id}
    if identity.user_id:
        out["user_id"] = identity.user_id
    if identity.consent:
        out["consent"] = dict(identity.consent)
    if identity.user_data:
        out["user_data"] = json.loads(identity.user_data)
    if identity.user_properties:
        out["user_properties"] = json.loads(identity.user_properties)
    out["event"] = {
        "name": event.name,
        "params": dict(event.params),
        "timestamp_micros": to_micros(event.timestamp),
    }
    return out


def group_key(payload: dict[str, Any]) -> str:
    ident = {k: v for k, v in payload.items() if k != "event"}
    return _SORTED_COMPACT_JSON.encode(ident)


def request_body(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One request for payloads sharing one identity."""
    first = payloads[0]
    body = {k: v for k, v in first.items() if k != "event"}
    body["events"] = [p["event"] for p in payloads]
    return body


def body_size(body: dict[str, Any]) -> int:
    return len(COMPACT_JSON.encode(body).encode())


def _size(value: Any) -> int:
    """Bytes of the compact UTF-8 JSON; a lone surrogate counts as the 3 bytes it would take,
    so sizing never raises (validation is what refuses it)."""
    return len(COMPACT_JSON.encode(value).encode("utf-8", "surrogatepass"))


@dataclass
class Batch:
    keys: list[str]
    body: dict[str, Any]
    size: int = -1
    """Bytes of `body` as sent (compact UTF-8 JSON); -1: not measured."""
    data: bytes | None = None
    """`body` encoded as sent, made once here (sizing needs it anyway) and reused by the
    sender; None when it cannot be encoded (a lone surrogate: validation refuses it)."""


def build_batches(items: Sequence[tuple[str, dict[str, Any]]]) -> list[Batch]:
    """Group (key, stored payload) by identity and cut into requests GA4 accepts.

    A body's size is the size of its identity part with `"events":[]` plus each event's size
    and a comma between two (compact JSON is that concatenation), so each event is encoded
    once to find the cuts, not once per event added after it; each body once when done.
    """
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, payload in items:
        groups.setdefault(group_key(payload), []).append((key, payload))
    batches: list[Batch] = []
    limit = MAX_BODY_BYTES - SIZE_MARGIN
    for members in groups.values():
        if len(members) == 1:  # nothing to cut (most CRM conversions: one per client id)
            batches.append(_batch(members))
            continue
        base = _size(request_body([{**members[0][1], "event": None}])) - len("null")
        current: list[tuple[str, dict[str, Any]]] = []
        size = base
        for key, payload in members:
            event_size = _size(payload["event"])
            if current and (len(current) + 1 > MAX_EVENTS or size + 1 + event_size >= limit):
                batches.append(_batch(current))
                current, size = [], base
            size += event_size + (1 if current else 0)
            current.append((key, payload))
        if current:
            batches.append(_batch(current))
    return batches


def _batch(members: list[tuple[str, dict[str, Any]]]) -> Batch:
    body = request_body([p for _, p in members])
    text = COMPACT_JSON.encode(body)
    try:
        data: bytes | None = text.encode("utf-8")
    except UnicodeEncodeError:
        data = None
    size = len(data) if data is not None else len(text.encode("utf-8", "surrogatepass"))
    return Batch([k for k, _ in members], body, size, data)
