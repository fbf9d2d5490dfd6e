"""What a mapping would do with real CRM transitions, without sending or recording anything.

Each transition goes through the capture plan a run uses (`pipeline/plan.py`: stage ids from
the CRM, mapping, GA4 rules, the 72 h window), so the preview shows exactly what a run would
store; only the once-per-record guard, which needs the state store, is not applied.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ga4sync.core.model import RejectedRecord, Status, TimeWindow
from ga4sync.mapping.load import LoadedMapping
from ga4sync.pipeline.config import Config
from ga4sync.pipeline.plan import CapturePlan
from ga4sync.state.store import OutboxRow

OUTCOME = {Status.PENDING: "send", Status.SKIPPED: "skip", Status.INVALID: "invalid"}
UNREADABLE = "(unreadable)"
"""The `to` of a record the connector could not read (a bad CSV row): no stage is known."""


@dataclass(frozen=True)
class PreviewRow:
    """One CRM transition and what the mapping makes of it."""

    record_id: str
    from_value: str | None
    to_value: str
    changed_at: str
    outcome: str
    """`send`, `skip` or `invalid`."""
    event: str | None
    rule: str | None
    reason: str | None
    params: dict[str, Any] | None


@dataclass(frozen=True)
class PreviewLine:
    """Transitions with the same move and the same outcome, counted."""

    from_value: str
    to_value: str
    outcome: str
    result: str
    """The GA4 event sent, or the reason code for a skip / invalid."""
    rule: str
    count: int
    example: str
    """One record's detail, e.g. why it was skipped."""


@dataclass(frozen=True)
class Preview:
    rows: list[PreviewRow]
    warnings: list[str]
    """The plan's warnings: stage names the CRM does not know, snapshot mode, ..."""


def read_preview(
    config: Config, connector: str, mapping: LoadedMapping, window: TimeWindow, *, now: datetime
) -> Preview:
    """Every transition of the window and what a run would make of it; nothing is stored."""
    settings = config.connector(connector)
    rows: list[PreviewRow] = []
    with CapturePlan.open(settings, mapping, base_dir=config.base_dir) as plan:
        pages = plan.pages(window, now=lambda: now, scope="preview", old_events=config.old_events)
        for planned in pages:
            rows += [preview_row(row) for row in planned.rows]
            rows += [rejected_row(r) for r in planned.page.rejected]
        return Preview(rows, plan.warnings)


def preview_row(row: OutboxRow) -> PreviewRow:
    """A transition's outbox row, as the preview shows it."""
    outcome = OUTCOME.get(Status(row.status), str(row.status))
    params = (row.payload or {}).get("event", {}).get("params") if row.payload else None
    return PreviewRow(
        record_id=row.record_id,
        from_value=row.from_value,
        to_value=row.to_value,
        changed_at=row.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        outcome=outcome,
        event=row.event_name,
        rule=row.rule,
        reason=row.reason,
        params=dict(params) if params else None,
    )


def rejected_row(r: RejectedRecord) -> PreviewRow:
    """A record the connector refused (a bad CSV row, a malformed CRM record): a run stores it
    as `invalid`, so the preview shows it too, with the reason, instead of dropping it."""
    return PreviewRow(
        record_id=r.record_ref,
        from_value=None,
        to_value=UNREADABLE,
        changed_at="",
        outcome="invalid",
        event=None,
        rule=None,
        reason=r.reason,
        params=None,
    )


def summarize(rows: Iterable[PreviewRow]) -> list[PreviewLine]:
    """Group by move and outcome; the biggest groups first."""
    groups: dict[tuple[str, str, str, str, str], list[PreviewRow]] = {}
    for r in rows:
        code = _reason_code(r) if r.outcome != "send" else (r.event or "")
        key = (r.from_value or "(new)", r.to_value, r.outcome, code, r.rule or "")
        groups.setdefault(key, []).append(r)
    lines = [
        PreviewLine(
            from_value=k[0],
            to_value=k[1],
            outcome=k[2],
            result=k[3],
            rule=k[4],
            count=len(members),
            example=_example(members[0]),
        )
        for k, members in groups.items()
    ]
    order = {"send": 0, "invalid": 1, "skip": 2}
    lines.sort(key=lambda ln: (order.get(ln.outcome, 3), -ln.count, ln.from_value, ln.to_value))
    return lines


def _reason_code(r: PreviewRow) -> str:
    reason = r.reason or ""
    if r.outcome == "invalid":
        if r.to_value == UNREADABLE:
            return "unreadable record"
        if reason.startswith("GA4 rule "):
            return reason.split(" at ", 1)[0]
        return "mapping rule"
    return reason.split(":", 1)[0]


def _example(r: PreviewRow) -> str:
    if r.outcome == "send":
        return json.dumps(r.params or {}, sort_keys=True, default=str)[:120]
    return f"{r.record_id}: {r.reason or ''}"[:160]


CSV_COLUMNS = ["from", "to", "outcome", "event_or_reason", "rule", "count", "example"]
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets."""


def spreadsheet_safe(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never runs: a stage named
    `=HYPERLINK("https://...")` would otherwise become a live link (or worse) in the sheet a
    sales-ops person opens. The `'` prefix is what those tools themselves use for "text"
    (OWASP's CSV injection advice)."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_LEADS) else text


def to_csv(lines: list[PreviewLine]) -> str:
    buf = io.StringIO()
    # RFC 4180 line ends: a CR inside a stage name is then quoted like a line feed, where with
    # "\n" it was written bare and split the row in two for any CSV reader.
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for ln in lines:
        cells = [ln.from_value, ln.to_value, ln.outcome, ln.result, ln.rule, ln.example]
        safe = [spreadsheet_safe(c) for c in cells]
        writer.writerow([*safe[:5], ln.count, safe[5]])
    return buf.getvalue()


def to_json(header: dict[str, Any], lines: list[PreviewLine], rows: list[PreviewRow]) -> str:
    doc = {
        **header,
        "summary": [asdict(ln) for ln in lines],
        "transitions": [asdict(r) for r in rows],
    }
    return json.dumps(doc, indent=2, default=str) + "\n"
