"""How stage moves are found in Salesforce: one reader per kind of history (crm-apis.md §3).

- `OpportunityHistoryReader`: `OpportunityHistory` is always on and stores the *new* values after
  each change of stage, amount, probability or close date. A move is a row whose stage differs
  from the opportunity's previous row; the row before the window is looked up once per run.
- `FieldHistoryReader`: `<Object>History` / `<Object>__History` rows with `Field = <stage field>`
  carry OldValue and NewValue, so each row is a move.
- `RecordPollReader` (salesforce_polling.py): polls the object itself by `SystemModstamp`, for
  Lead (history and conversion) and for snapshot diff.

Readers only read; the engine commits each yielded page with its watermark in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ga4sync.connectors.salesforce_soql import (
    id_batches,
    parse_sf_datetime,
    soql_datetime,
    soql_quote,
    time_range,
)
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow, TransitionPage

SnapshotLookup = Callable[[list[str]], Mapping[str, str | None]]
"""record ids -> the stage value the state store last saw for each (absent: never seen)."""

KnownKeys = Callable[[list[str]], set[str]]
"""transition keys -> those already in the outbox. History rows re-read in the overlap are
recognised by key alone, so a quiet poll does not fetch their records again."""


class SoqlSource(Protocol):
    def pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Every page of one query, following `nextRecordsUrl`."""
        ...


@dataclass(frozen=True)
class ReadSpec:
    """What one connector object reads: the stage field and only the fields the mapping uses."""

    connector: str
    object_type: str
    stage_field: str
    record_fields: tuple[str, ...]

    def transition(
        self,
        record: Mapping[str, Any],
        *,
        before: str | None,
        after: str,
        at: datetime,
        detected_by: str,
        source_ref: str,
        event_ref: str | None = None,
    ) -> StageTransition:
        return StageTransition(
            connector=self.connector,
            object_type=self.object_type,
            record_id=str(record["Id"]),
            field=self.stage_field,
            from_value=before,
            to_value=after,
            changed_at=at,
            detected_by="history" if detected_by == "history" else "snapshot",
            fields={k: v for k, v in record.items() if k != "attributes"},
            source_ref=source_ref,
            event_ref=event_ref,
        )

    def key_of(self, record_id: str, event_ref: str, at: datetime) -> str:
        """The key a history row's move gets, known before its record is fetched."""
        return StageTransition(
            self.connector, self.object_type, record_id, self.stage_field, None, "", at,
            event_ref=event_ref,
        ).key  # fmt: skip

    def reject(self, ref: str, row: Mapping[str, Any], reason: str) -> RejectedRecord:
        return RejectedRecord(
            connector=self.connector,
            object_type=self.object_type,
            record_ref=ref,
            reason=reason,
            raw={k: v for k, v in row.items() if k != "attributes"},
        )


def fetch_records(
    source: SoqlSource, spec: ReadSpec, ids: list[str], extra: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The mapped fields of these records; deleted (recycle-bin) records are simply absent."""
    fields = ", ".join(dict.fromkeys(("Id", *spec.record_fields, *extra)))
    out: dict[str, dict[str, Any]] = {}
    template = f"SELECT {fields} FROM {spec.object_type} WHERE Id IN ({{ids}})"
    for soql in id_batches(template, ids):
        for rows in source.pages(soql):
            for row in rows:
                if row.get("Id"):
                    out[str(row["Id"])] = {k: v for k, v in row.items() if k != "attributes"}
    return out


def text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


class OpportunityHistoryReader:
    """Stage moves from `OpportunityHistory`, in CreatedDate order, each with its true time."""

    def __init__(self, source: SoqlSource, spec: ReadSpec, known: KnownKeys | None) -> None:
        self.source, self.spec, self.known = source, spec, known

    def read(self, window: TimeWindow) -> Iterator[TransitionPage]:
        last_stage: dict[str, str | None] = {}
        soql = (
            "SELECT Id, OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
            f"WHERE {time_range('CreatedDate', window.start, window.end)} "
            "ORDER BY CreatedDate, Id"
        )
        for rows in self.source.pages(soql):
            if rows:
                yield self._page(rows, window, last_stage)

    def _page(
        self, rows: list[dict[str, Any]], window: TimeWindow, last_stage: dict[str, str | None]
    ) -> TransitionPage:
        rejected: list[RejectedRecord] = []
        good: list[tuple[str, str, str, datetime]] = []
        watermark: datetime | None = None
        for row in rows:
            hid, opp, stage = row.get("Id"), row.get("OpportunityId"), text(row.get("StageName"))
            ref = f"OpportunityHistory/{hid or '?'}"
            try:
                at = parse_sf_datetime(row.get("CreatedDate"))
            except ValueError:
                rejected.append(self.spec.reject(ref, row, "CreatedDate is missing or bad"))
                continue
            watermark = at if watermark is None or at > watermark else watermark
            if not opp or not hid:
                rejected.append(self.spec.reject(ref, row, "history row has no Id/OpportunityId"))
            elif stage is None:
                rejected.append(self.spec.reject(ref, row, "StageName is empty"))
            else:
                good.append((str(hid), str(opp), stage, at))
        keys = {hid: self.spec.key_of(opp, f"OpportunityHistory/{hid}", at)
                for hid, opp, _, at in good}  # fmt: skip
        known = self.known(list(keys.values())) if self.known and keys else set()
        # Only an opportunity whose first row in this run is new needs the stage before the
        # window; a row already captured tells the stage by itself.
        resolved, unseen = set(last_stage), []
        for hid, opp, _, _ in good:
            if opp not in resolved:
                resolved.add(opp)
                if keys[hid] not in known:
                    unseen.append(opp)
        last_stage.update(self._stage_before(unseen, window.start))
        moves: list[tuple[str, str, str | None, str, datetime]] = []
        for hid, opp, stage, at in good:
            before = last_stage.get(opp)
            last_stage[opp] = stage
            if keys[hid] in known or before == stage:
                continue  # captured by an earlier poll; or an amount/close-date edit
            moves.append((hid, opp, before, stage, at))
        records = fetch_records(self.source, self.spec, list(dict.fromkeys(m[1] for m in moves)))
        transitions = [
            self.spec.transition(
                records[opp],
                before=before,
                after=stage,
                at=at,
                detected_by="history",
                source_ref=f"OpportunityHistory/{hid}",
                event_ref=f"OpportunityHistory/{hid}",
            )
            for hid, opp, before, stage, at in moves
            if opp in records  # else deleted since: there is no record to send about
        ]
        captured = sum(1 for hid in keys if keys[hid] in known)
        return TransitionPage(transitions, watermark, rejected, already_captured=captured)

    def _stage_before(self, opp_ids: list[str], start: datetime) -> dict[str, str | None]:
        """Each opportunity's stage just before the window (None: it has no earlier row)."""
        out: dict[str, str | None] = dict.fromkeys(opp_ids)
        template = (
            "SELECT Id, OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
            f"WHERE OpportunityId IN ({{ids}}) AND CreatedDate < {soql_datetime(start)} "
            "ORDER BY OpportunityId, CreatedDate, Id"
        )
        for soql in id_batches(template, opp_ids):
            for rows in self.source.pages(soql):
                for row in rows:
                    stage = text(row.get("StageName"))
                    if stage is not None:
                        out[str(row.get("OpportunityId"))] = stage
        return out


@dataclass(frozen=True)
class FieldHistory:
    """A field-history object: `LeadHistory` (parent `LeadId`), `Foo__History` (`ParentId`)."""

    object_name: str
    parent_field: str

    @classmethod
    def for_object(cls, obj: str, declared: str | None) -> FieldHistory:
        name = declared or (obj[: -len("__c")] + "__History" if obj.endswith("__c") else None)
        name = name or f"{obj}History"
        parent = "ParentId" if name.endswith("__History") else f"{obj}Id"
        if name == "OpportunityFieldHistory":
            parent = "OpportunityId"
        return cls(name, parent)


def history_moves(
    spec: ReadSpec,
    history: FieldHistory,
    rows: list[dict[str, Any]],
    records: Mapping[str, Mapping[str, Any]],
) -> tuple[list[StageTransition], list[RejectedRecord]]:
    """Each row is a move from OldValue to NewValue; a `created` row is the record's first
    stage (None -> the OldValue of its first stage change, or its value now if it never
    changed), as Opportunity's first OpportunityHistory row is.

    A tracked lookup field gets two rows per change at the same time: one with the record ids
    (DataType `EntityId`) and one with the names people see. Only the names row is a move, or
    every change would be sent twice."""
    moves: list[StageTransition] = []
    rejected: list[RejectedRecord] = []
    rows = [r for r in rows if r.get("DataType") != "EntityId"]
    first_old: dict[str, str | None] = {}
    for row in sorted(rows, key=lambda r: (str(r.get("CreatedDate")), str(r.get("Id")))):
        parent_id = str(row.get(history.parent_field))
        if row.get("Field") != "created" and parent_id not in first_old:
            first_old[parent_id] = text(row.get("OldValue"))
    for row in rows:
        hid, parent = row.get("Id"), row.get(history.parent_field)
        ref = f"{history.object_name}/{hid or '?'}"
        try:
            at = parse_sf_datetime(row.get("CreatedDate"))
        except ValueError:
            rejected.append(spec.reject(ref, row, "CreatedDate is missing or bad"))
            continue
        if not hid or not parent:
            reason = f"history row has no Id/{history.parent_field}"
            rejected.append(spec.reject(ref, row, reason))
            continue
        before, after = text(row.get("OldValue")), text(row.get("NewValue"))
        if row.get("Field") == "created":
            record = records.get(str(parent), {})
            before = None
            after = first_old.get(str(parent)) or text(record.get(spec.stage_field))
        if after is None or str(parent) not in records:
            continue  # the stage was cleared, or the record was deleted since
        moves.append(
            spec.transition(
                records[str(parent)],
                before=before,
                after=after,
                at=at,
                detected_by="history",
                source_ref=ref,
                event_ref=ref,
            )
        )
    return moves, rejected


class FieldHistoryReader:
    """History-first: `Field = <stage>` rows since the window start, then their records."""

    def __init__(
        self, source: SoqlSource, spec: ReadSpec, history: FieldHistory, known: KnownKeys | None
    ) -> None:
        self.source, self.spec, self.history, self.known = source, spec, history, known

    def read(self, window: TimeWindow) -> Iterator[TransitionPage]:
        h = self.history
        soql = (
            f"SELECT Id, {h.parent_field}, Field, OldValue, NewValue, DataType, CreatedDate "
            f"FROM {h.object_name} WHERE Field IN ({history_fields(self.spec)}) AND "
            f"{time_range('CreatedDate', window.start, window.end)} ORDER BY CreatedDate, Id"
        )
        for rows in self.source.pages(soql):
            if not rows:
                continue
            stamps = [t for t in (maybe_time(r.get("CreatedDate")) for r in rows) if t]
            new_rows = self._new_rows(rows)
            ids = list(
                dict.fromkeys(str(r[h.parent_field]) for r in new_rows if r.get(h.parent_field))
            )
            records = fetch_records(self.source, self.spec, ids)
            moves, rejected = history_moves(self.spec, h, new_rows, records)
            yield TransitionPage(
                moves,
                max(stamps, default=None),
                rejected,
                already_captured=len(rows) - len(new_rows),
            )

    def _new_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows whose move is not in the outbox yet (unreadable rows stay, to be rejected)."""
        if self.known is None:
            return rows
        keyed: dict[str, dict[str, Any]] = {}
        for row in rows:
            at = maybe_time(row.get("CreatedDate"))
            if at is not None:
                ref = f"{self.history.object_name}/{row.get('Id')}"
                keyed[self.spec.key_of(str(row.get(self.history.parent_field)), ref, at)] = row
        known = self.known(list(keyed)) if keyed else set()
        captured = {id(keyed[k]) for k in known if k in keyed}
        return [r for r in rows if id(r) not in captured]


def history_fields(spec: ReadSpec) -> str:
    """The history `Field` values read: the stage field, and `created` for a new record."""
    return f"{soql_quote(spec.stage_field)}, 'created'"


def maybe_time(value: Any) -> datetime | None:
    try:
        return parse_sf_datetime(value)
    except ValueError:
        return None
