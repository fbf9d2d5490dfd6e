"""Domain types that cross module boundaries (see DESIGN.md, "Domain types")."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from ga4sync.core.clock import ensure_utc

DetectedBy = Literal["history", "snapshot", "file"]


class Status(StrEnum):
    """Every outbox row is in exactly one of these; every non-`sent` row says why."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    SKIPPED = "skipped"
    DEAD = "dead"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class StageTransition:
    """One move of one record's stage field, as the CRM recorded it."""

    connector: str
    object_type: str
    record_id: str
    field: str
    from_value: str | None
    to_value: str
    changed_at: datetime
    detected_by: DetectedBy = "history"
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source_ref: str | None = None
    """Where it came from in the CRM (history row id, file:row) for the audit trail."""
    event_ref: str | None = None
    """A CRM id that names this move for good (a history row id). When set it stands in for
    `to_value` in the key, so a renamed stage re-read in the overlap is not a second move."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "changed_at", ensure_utc(self.changed_at))

    @property
    def key(self) -> str:
        return transition_key(self)


def transition_key(t: StageTransition) -> str:
    """Stable id: re-reading the same CRM page yields the same key, so capture is idempotent."""
    parts = [
        t.connector,
        t.object_type,
        t.record_id,
        t.field,
        f"ref:{t.event_ref}" if t.event_ref else t.to_value,
        t.changed_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RejectedRecord:
    """A CRM record the connector could not turn into a transition (missing id, bad time...)."""

    connector: str
    object_type: str
    record_ref: str
    reason: str
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        blob = json.dumps(
            [self.connector, self.object_type, self.record_ref, self.reason, dict(self.raw)],
            sort_keys=True,
            default=str,
        )
        return "rej-" + hashlib.sha256(blob.encode()).hexdigest()[:28]


@dataclass(frozen=True)
class TransitionPage:
    """One CRM page: captured in one transaction together with its watermark."""

    transitions: list[StageTransition]
    watermark: datetime | None
    rejected: list[RejectedRecord] = dataclasses.field(default_factory=list)
    snapshots: dict[str, str] = dataclasses.field(default_factory=dict)
    """record_id -> stage value seen, for snapshot-diff connectors."""
    already_captured: int = 0
    """Moves re-read in the overlap that the connector recognised as captured and left out
    (reported as duplicates, like the ones the outbox refuses)."""


@dataclass(frozen=True)
class TimeWindow:
    """A half-open window [start, end) of CRM change times; end None means "up to now"."""

    start: datetime
    end: datetime | None = None


@dataclass(frozen=True)
class Identity:
    """Who the event is about, as GA4 needs it; grouped on so one request carries one user."""

    client_id: str
    user_id: str | None = None
    session_id: str | None = None
    consent: tuple[tuple[str, str], ...] = ()
    user_data: str | None = None
    """Canonical JSON of hashed user_data, so identities stay hashable."""
    user_properties: str | None = None
    """Canonical JSON of GA4 user_properties (`{name: {value}}`); part of the request identity."""

    def group_key(self) -> str:
        return json.dumps(
            [self.client_id, self.user_id, list(self.consent), self.user_data, self.user_properties]
        )


@dataclass(frozen=True)
class Ga4Event:
    name: str
    params: Mapping[str, Any]
    timestamp: datetime


@dataclass(frozen=True)
class MappedEvent:
    """What a mapping rule made of a transition."""

    rule: str
    event: Ga4Event
    identity: Identity
    once_per_record: bool
    resend_if_unknown: bool


@dataclass(frozen=True)
class Skipped:
    """The transition is fine but is not sent (no rule, no client id, consent, too old...)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Invalid:
    """A rule refused the transition; names the rule so a person knows what to fix."""

    rule: str
    detail: str


MappingResult = MappedEvent | Skipped | Invalid
