"""Reading Salesforce by polling the object itself (`SystemModstamp`), not its history first.

Used for Lead, whose conversion lives on the record (`IsConverted`, `ConvertedDate`): one query
answers both, and the Status moves come from `LeadHistory` for the leads that changed only. Also
used for snapshot diff, when a field has no history: a value unlike the one the state store
remembers is a move timed by SystemModstamp, and moves between two polls cannot be seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ga4sync.connectors.salesforce_history import (
    FieldHistory,
    ReadSpec,
    SnapshotLookup,
    SoqlSource,
    history_fields,
    history_moves,
    maybe_time,
    text,
)
from ga4sync.connectors.salesforce_soql import id_batches, parse_sf_date, time_range
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow, TransitionPage

CONVERTED_STAGE = "Converted"
"""The pseudo-stage a converted Lead moves to; a mapping rule can say `to: Converted`."""

MODSTAMP_MARK = "SystemModstamp read: "
"""Prefix of a snapshot value that records the SystemModstamp read, not a stage."""


@dataclass
class RecordPollReader:
    """Polls the object by SystemModstamp; history, snapshot diff and Lead conversion per page."""

    source: SoqlSource
    spec: ReadSpec
    history: FieldHistory | None
    snapshots: SnapshotLookup | None
    conversions: bool = False
    seen: dict[str, str] = field(default_factory=dict)
    """Stage values this run already yielded, for when the engine has not committed them yet."""

    def read(self, window: TimeWindow) -> Iterator[TransitionPage]:
        extra: tuple[str, ...] = ("SystemModstamp", "CreatedDate")
        if self.conversions:
            extra += ("IsConverted", "ConvertedDate")
        fields = ", ".join(dict.fromkeys(("Id", *self.spec.record_fields, *extra)))
        soql = (
            f"SELECT {fields} FROM {self.spec.object_type} "
            f"WHERE {time_range('SystemModstamp', window.start, window.end)} "
            "ORDER BY SystemModstamp, Id"
        )
        for rows in self.source.pages(soql):
            if rows:
                yield self._page(rows, window)

    def _page(self, rows: list[dict[str, Any]], window: TimeWindow) -> TransitionPage:
        rejected: list[RejectedRecord] = []
        records: dict[str, dict[str, Any]] = {}
        for row in rows:
            plain = {k: v for k, v in row.items() if k != "attributes"}
            if not row.get("Id"):
                rejected.append(self.spec.reject(f"{self.spec.object_type}/?", plain, "no Id"))
            else:
                records[str(row["Id"])] = plain
        stamps = {rid: maybe_time(r.get("SystemModstamp")) for rid, r in records.items()}
        moves: list[StageTransition] = []
        snapshots: dict[str, str] = {}
        if self.history is not None:
            fresh = self._changed_since_last_read(records)
            moves, bad_rows = self._history(list(fresh), records, window)
            rejected += bad_rows
            snapshots = fresh
        else:
            moves, snapshots = self._diff(records, stamps, window)
        if self.conversions:
            moves += self._conversions(records, window)
        moves.sort(key=lambda t: (t.changed_at, t.record_id))
        watermark = max((t for t in stamps.values() if t), default=None)
        return TransitionPage(moves, watermark, rejected, snapshots)

    def _changed_since_last_read(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        """Records whose SystemModstamp is not the one read last time, as snapshot values.

        A record's history rows commit with the record change that stamps it, so a record
        still at the stamp we read has no history we have not seen: the overlap's re-read
        costs no history query. The value is marked so snapshot diff never takes it for a stage.
        """
        stamps = {rid: f"{MODSTAMP_MARK}{r.get('SystemModstamp')}" for rid, r in records.items()}
        before = self.snapshots(list(records)) if self.snapshots else {}
        return {rid: stamp for rid, stamp in stamps.items() if before.get(rid) != stamp}

    def _history(
        self, ids: list[str], records: Mapping[str, Mapping[str, Any]], window: TimeWindow
    ) -> tuple[list[StageTransition], list[RejectedRecord]]:
        assert self.history is not None
        h = self.history
        template = (
            f"SELECT Id, {h.parent_field}, Field, OldValue, NewValue, DataType, CreatedDate "
            f"FROM {h.object_name} WHERE {h.parent_field} IN ({{ids}}) "
            f"AND Field IN ({history_fields(self.spec)})"
            f" AND {time_range('CreatedDate', window.start, window.end)} "
            f"ORDER BY {h.parent_field}, CreatedDate, Id"
        )
        if not ids:
            return [], []
        rows = [row for soql in id_batches(template, ids) for page in self.source.pages(soql)
                for row in page]  # fmt: skip
        return history_moves(self.spec, h, rows, records)

    def _diff(
        self,
        records: Mapping[str, Mapping[str, Any]],
        stamps: Mapping[str, datetime | None],
        window: TimeWindow,
    ) -> tuple[list[StageTransition], dict[str, str]]:
        """A value unlike the remembered one is a move timed by SystemModstamp.

        A record never seen before is only a baseline, unless it was created inside the
        window: then its first stage is a real first move. Otherwise an old Closed Won deal
        that was merely edited would look like a new sale.
        """
        known = dict(self.snapshots(list(records)) if self.snapshots else {})
        known.update({k: v for k, v in self.seen.items() if k in records})
        moves: list[StageTransition] = []
        snapshots: dict[str, str] = {}
        known = {k: v for k, v in known.items() if not (v or "").startswith(MODSTAMP_MARK)}
        for rid, record in records.items():
            value, at = text(record.get(self.spec.stage_field)), stamps.get(rid)
            if value is None or at is None:
                continue
            before = known.get(rid)
            if before == value:
                continue
            snapshots[rid] = self.seen[rid] = value
            if rid not in known:
                created = maybe_time(record.get("CreatedDate"))
                if created is None or created < window.start:
                    continue
            moves.append(
                self.spec.transition(
                    record,
                    before=before,
                    after=value,
                    at=at,
                    detected_by="snapshot",
                    source_ref=f"{self.spec.object_type}/{rid}@{record.get('SystemModstamp')}",
                )
            )
        return moves, snapshots

    def _conversions(
        self, records: Mapping[str, Mapping[str, Any]], window: TimeWindow
    ) -> list[StageTransition]:
        """Salesforce keeps only the *date* of a conversion; the move is timed at its midnight
        (UTC), which keeps it the same move however often the lead is read again."""
        earliest = window.start - timedelta(days=1)
        out: list[StageTransition] = []
        for rid, record in records.items():
            if record.get("IsConverted") is not True:
                continue
            day = parse_sf_date(record.get("ConvertedDate"))
            if day is None or day < earliest.replace(hour=0, minute=0, second=0, microsecond=0):
                continue
            out.append(
                self.spec.transition(
                    record,
                    before=text(record.get(self.spec.stage_field)),
                    after=CONVERTED_STAGE,
                    at=day,
                    detected_by="history" if self.history else "snapshot",
                    source_ref=f"{self.spec.object_type}/{rid}/ConvertedDate",
                    event_ref=f"{self.spec.object_type}/{rid}/converted",
                )
            )
        return out
