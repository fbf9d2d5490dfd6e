"""The sandbox's `/debug/mp/collect`: answers Google's validation server gave, replayed.

Answering with ga4sync's own validator would make a `--validate-remote` test prove only that
ga4sync agrees with itself (issue 12 §4). So the answers are recordings others published
(tests/contracts/ga4/README.md names each source), sent byte for byte; the request only chooses
which one, by a small recogniser of its own that deliberately does not share ga4sync's rules.
Anything it does not recognise is answered as valid, which is also what Google does for most
of what RELAXED production would silently drop.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parent / "ga4_recordings"
"""Shipped with the sandbox (an installed `ga4sync sandbox` answers too); byte-identical copies
of tests/contracts/ga4/, which keeps them with their sources (a test holds the two equal)."""

EVENT_KEYS = ("name", "params", "timestamp_micros")


@dataclass(frozen=True)
class DebugAnswer:
    status: int
    body: bytes
    recording: str | None
    """The file answered with, None when no recording applies (not JSON)."""


def recording_for(raw: bytes) -> str | None:
    """Which recording answers this body; None when it is not a JSON object (no recording).

    First that applies: an unknown key in an event, no client id at all, an event name that
    does not start with an ASCII letter; otherwise the empty (valid) answer.
    """
    try:
        body = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    events = body.get("events")
    events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
    if any(key not in EVENT_KEYS for event in events for key in event):
        return "br33f_unknown_event_field.json"
    if "client_id" not in body and "app_instance_id" not in body:
        return "bluepsyduck_client_id_required.json"
    for event in events:
        name = event.get("name")
        if isinstance(name, str) and not (name[:1] and name[0] in string.ascii_letters):
            return "google_name_invalid.json"
    return "google_valid.json"


@dataclass(frozen=True)
class RecordedDebugAnswers:
    """Answers debug requests from the recordings in `folder` (read per request: few, small)."""

    folder: Path = RECORDINGS

    def answer(self, raw: bytes) -> DebugAnswer:
        name = recording_for(raw)
        if name is None:
            return DebugAnswer(400, b"", None)
        path = self.folder / name
        if not path.is_file():
            message = f"sandbox: recorded GA4 debug answer {path} is missing from the install"
            return DebugAnswer(501, message.encode(), None)
        return DebugAnswer(200, path.read_bytes(), name)
