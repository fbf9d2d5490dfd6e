"""Pure: a page of transitions + a mapping -> outbox rows with their initial status and reason."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime

from ga4sync.connectors.csv_time import future_time_reason
from ga4sync.core.model import (
    Invalid,
    MappedEvent,
    RejectedRecord,
    Skipped,
    StageTransition,
    Status,
)
from ga4sync.ga4.payload import group_key, request_body, stored_payload
from ga4sync.ga4.rules import BACKDATE_WINDOW, Mode, validate_payload
from ga4sync.mapping.apply import apply_mapping
from ga4sync.mapping.load import LoadedMapping
from ga4sync.state.store import OutboxRow


def once_key(t: StageTransition, event_name: str) -> str:
    raw = "\x1f".join([t.connector, t.object_type, t.record_id, event_name])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def row_for_transition(
    t: StageTransition,
    mapping: LoadedMapping,
    *,
    now: datetime,
    scope: str,
    old_events: str = "skip",
) -> OutboxRow:
    row = OutboxRow(
        key=t.key,
        connector=t.connector,
        object_type=t.object_type,
        record_id=t.record_id,
        field=t.field,
        from_value=t.from_value,
        to_value=t.to_value,
        changed_at=t.changed_at,
        detected_by=t.detected_by,
        status=Status.PENDING,
        source_ref=t.source_ref,
        mapping_path=mapping.path,
        mapping_hash=mapping.content_hash,
        record=dict(t.fields),
        scope=scope,
    )
    result = apply_mapping(mapping, t)
    if isinstance(result, Skipped):
        return replace(row, status=Status.SKIPPED, reason=f"{result.reason}: {result.detail}")
    if isinstance(result, Invalid):
        return replace(
            row,
            status=Status.INVALID,
            rule=result.rule,
            reason=f"mapping rule `{result.rule}` ({mapping.path}): {result.detail}",
        )
    assert isinstance(result, MappedEvent)
    payload = stored_payload(result.identity, result.event)
    row = replace(
        row,
        rule=result.rule,
        event_name=result.event.name,
        payload=payload,
        group_key=group_key(payload),
        resend_if_unknown=result.resend_if_unknown,
        once_key=once_key(t, result.event.name) if result.once_per_record else None,
    )
    # Check every GA4 rule except the time window, which delivery checks at send time.
    # A copy of the event alone (the one dict changed below), not a deep copy of the payload.
    body = request_body([{**payload, "event": dict(payload["event"])}])
    for ev in body["events"]:
        ev.pop("timestamp_micros", None)
    problems = validate_payload(body, mode=Mode.ENFORCE, now=now)
    if problems:
        first = problems[0]
        return replace(
            row,
            status=Status.INVALID,
            reason=f"GA4 rule {first.validationCode} at "
            f"{first.fieldPath or '(payload)'}: {first.description} "
            f"(mapping rule `{result.rule}` in {mapping.path})",
        )
    future = (
        future_time_reason(t.changed_at, now, _csv_zone(mapping), str(mapping.path))
        if t.detected_by == "file"
        else None
    )
    if future:
        return replace(row, status=Status.INVALID, reason=future)
    if old_events == "skip" and now - t.changed_at > BACKDATE_WINDOW:
        return replace(
            row,
            status=Status.SKIPPED,
            reason="too_old: the CRM change is older than GA4's 72 h backdating window; "
            "`ga4sync run --old-events clamp` sends it at now-72h",
        )
    return row


def _csv_zone(mapping: LoadedMapping) -> str | None:
    csv = mapping.model.csv
    return csv.timezone if csv is not None else None


def row_for_rejected(r: RejectedRecord, *, scope: str, now: datetime) -> OutboxRow:
    return OutboxRow(
        key=r.key,
        connector=r.connector,
        object_type=r.object_type,
        record_id=r.record_ref[:128],
        field="",
        from_value=None,
        to_value="",
        changed_at=now,
        detected_by="history",
        status=Status.INVALID,
        reason=f"malformed CRM record {r.record_ref}: {r.reason}",
        source_ref=r.record_ref,
        record=dict(r.raw),
        scope=scope,
    )
