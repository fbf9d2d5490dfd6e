"""The HubSpot account the sandbox serves: records, property history, pipelines and properties.

Mirrors what HubSpot does when a property changes: the value changes, a history entry with the
change time is added (served newest first), the record's last-modified property moves, and the
search index picks the new version up only after a lag (search is eventually consistent,
crm-apis.md §5.1). Until then search still filters and sorts the record by its *old* version
while answering with its *current* properties: a record edited while a sync pages through a
search comes back at its old place carrying a last-modified time far ahead of its neighbours,
as open-source HubSpot connectors saw in production (estuary/connectors#2210). Every write bumps
`version`, which lets the server cache search results between the pages of one query; a sorted
index of every indexed version by modified time keeps 100,000 records cheap.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MODIFIED_PROPERTY = {"contacts": "lastmodifieddate"}
"""Contacts are filtered on `lastmodifieddate`; every other object on `hs_lastmodifieddate`."""


def modified_property(object_type: str) -> str:
    return MODIFIED_PROPERTY.get(object_type, "hs_lastmodifieddate")


def hs_time(value: datetime) -> str:
    """HubSpot's wire format for datetimes: ISO-8601 UTC with milliseconds and a `Z`."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_ms(value: datetime) -> int:
    value = value.astimezone(UTC)
    return int(value.timestamp()) * 1000 + value.microsecond // 1000


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def ms_precision(value: datetime) -> datetime:
    """HubSpot keeps milliseconds; storing the same precision keeps comparisons exact."""
    return from_ms(to_ms(value))


@dataclass
class HistoryEntry:
    value: str
    at: datetime
    source_type: str = "CRM_UI"


@dataclass(frozen=True)
class IndexedVersion:
    """What the search index holds for one version of a record, from `visible_at` on."""

    visible_at: datetime
    modified_ms: int
    properties: dict[str, str | None]


@dataclass
class HsRecord:
    id: str
    object_type: str
    properties: dict[str, str | None]
    history: dict[str, list[HistoryEntry]]
    """Oldest first here; the server sends them newest first, as HubSpot does."""
    created: datetime
    modified: datetime
    versions: list[IndexedVersion]
    """Versions the search index knows, oldest first; search sees the newest visible one."""
    archived: bool = False
    archived_at: datetime | None = None

    def indexed(self, now: datetime) -> IndexedVersion | None:
        """The version search filters and sorts on at `now` (None before the first is indexed)."""
        seen = None
        for version in self.versions:
            if version.visible_at <= now:
                seen = version
        return seen

    def index_version(self, at: datetime, delay: timedelta) -> None:
        """Queue the current properties for the index; versions hidden by one already visible
        at `at` are dropped, so a record edited often keeps a short list."""
        version = IndexedVersion(at + delay, to_ms(self.modified), dict(self.properties))
        self.versions = [
            v for i, v in enumerate(self.versions) if not _superseded(self.versions, i, at)
        ]
        self.versions.append(version)


def _superseded(versions: list[IndexedVersion], i: int, at: datetime) -> bool:
    return any(later.visible_at <= at for later in versions[i + 1 :])


@dataclass(frozen=True)
class Stage:
    id: str
    label: str
    is_closed: bool = False
    probability: float = 0.5


@dataclass
class Pipeline:
    id: str
    label: str
    stages: list[Stage]


@dataclass(frozen=True)
class PropertyDef:
    name: str
    label: str
    type: str = "string"
    """string, number, datetime, enumeration (HubSpot's property types)."""
    options: tuple[tuple[str, str], ...] = ()
    """(value, label) pairs of an enumeration."""


DEFAULT_DEAL_STAGES = [
    Stage("appointmentscheduled", "Appointment scheduled", probability=0.2),
    Stage("qualifiedtobuy", "Qualified to buy", probability=0.4),
    Stage("presentationscheduled", "Presentation scheduled", probability=0.6),
    Stage("decisionmakerboughtin", "Decision maker bought-In", probability=0.8),
    Stage("contractsent", "Contract sent", probability=0.9),
    Stage("closedwon", "Closed won", is_closed=True, probability=1.0),
    Stage("closedlost", "Closed lost", is_closed=True, probability=0.0),
]
LIFECYCLE_STAGES = [
    ("subscriber", "Subscriber"),
    ("lead", "Lead"),
    ("marketingqualifiedlead", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "Sales Qualified Lead"),
    ("opportunity", "Opportunity"),
    ("customer", "Customer"),
    ("evangelist", "Evangelist"),
    ("other", "Other"),
]
LEAD_STATUSES = [
    ("NEW", "New"),
    ("OPEN", "Open"),
    ("IN_PROGRESS", "In Progress"),
    ("OPEN_DEAL", "Open Deal"),
    ("UNQUALIFIED", "Unqualified"),
    ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
    ("CONNECTED", "Connected"),
    ("BAD_TIMING", "Bad Timing"),
]
_COMMON = [
    PropertyDef("hs_object_id", "Record ID", "number"),
    PropertyDef("createdate", "Create Date", "datetime"),
    PropertyDef("hs_lastmodifieddate", "Last Modified Date", "datetime"),
    PropertyDef("ga_client_id", "GA client id"),
    PropertyDef("ga_session_id", "GA session id"),
    PropertyDef("hs_analytics_source", "Original Source"),
]
_OBJECT_PROPERTIES: dict[str, list[PropertyDef]] = {
    "deals": [
        PropertyDef("dealname", "Deal Name"),
        PropertyDef("amount", "Amount", "number"),
        PropertyDef("deal_currency_code", "Currency"),
        PropertyDef("pipeline", "Pipeline", "enumeration"),
        PropertyDef("closedate", "Close Date", "datetime"),
        PropertyDef("closed_lost_reason", "Closed Lost Reason"),
    ],
    "contacts": [
        PropertyDef("email", "Email"),
        PropertyDef("firstname", "First Name"),
        PropertyDef("lastname", "Last Name"),
        PropertyDef("phone", "Phone Number"),
        PropertyDef("lastmodifieddate", "Last Modified Date", "datetime"),
        PropertyDef("lifecyclestage", "Lifecycle Stage", "enumeration", tuple(LIFECYCLE_STAGES)),
        PropertyDef("hs_lead_status", "Lead Status", "enumeration", tuple(LEAD_STATUSES)),
    ],
}
DEFAULT_SEARCH_PROPERTIES = {
    "contacts": [
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ],
    "deals": [
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ],
}


class HubspotData:
    """Thread-safe in-memory account. Times are datetimes; the server formats them."""

    def __init__(self, *, search_lag: timedelta = timedelta(0)) -> None:
        self.lock = threading.RLock()
        self.search_lag = search_lag
        self.objects: dict[str, dict[str, HsRecord]] = {"deals": {}, "contacts": {}}
        self.pipelines: dict[str, list[Pipeline]] = {
            "deals": [Pipeline("default", "Sales Pipeline", list(DEFAULT_DEAL_STAGES))]
        }
        self.properties: dict[str, dict[str, PropertyDef]] = {}
        for obj, defs in _OBJECT_PROPERTIES.items():
            self.properties[obj] = {p.name: p for p in [*_COMMON, *defs]}
        self.version = 0
        self._ids = itertools.count(1001)
        self._index: dict[str, list[tuple[int, int, str]]] = {}
        self._index_version: dict[str, int] = {}
        self._ids_index: dict[str, list[tuple[int, str]]] = {}

    # -- schema ----------------------------------------------------------------------------
    def add_pipeline(self, object_type: str, pipeline: Pipeline) -> None:
        with self.lock:
            self.pipelines.setdefault(object_type, []).append(pipeline)
            self.version += 1

    def property_defs(self, object_type: str) -> list[PropertyDef]:
        """Property definitions; a pipeline stage property lists every pipeline's stages."""
        with self.lock:
            defs = dict(self.properties.get(object_type, {}))
            if object_type in self.pipelines:
                options = tuple(
                    (s.id, s.label) for p in self.pipelines[object_type] for s in p.stages
                )
                name = "dealstage" if object_type == "deals" else "hs_pipeline_stage"
                defs[name] = PropertyDef(name, "Deal Stage", "enumeration", options)
            return list(defs.values())

    def property_type(self, object_type: str, name: str) -> str:
        prop = self.properties.get(object_type, {}).get(name)
        if prop is not None:
            return prop.type
        return "number" if name == "hs_object_id" else "string"

    def _known(self, object_type: str, name: str) -> None:
        props = self.properties.setdefault(object_type, {p.name: p for p in _COMMON})
        if name not in props and name != "dealstage":
            props[name] = PropertyDef(name, name)

    # -- writes ----------------------------------------------------------------------------
    def create(
        self,
        object_type: str,
        at: datetime,
        properties: dict[str, Any],
        *,
        record_id: str | None = None,
        index_delay: timedelta | None = None,
        source_type: str = "CRM_UI",
    ) -> str:
        """A new record; every property set here gets its first history entry at `at`."""
        at = ms_precision(at)
        with self.lock:
            table = self.objects.setdefault(object_type, {})
            rid = str(record_id or next(self._ids))
            mod = modified_property(object_type)
            props: dict[str, str | None] = {
                "hs_object_id": rid,
                "createdate": hs_time(at),
                mod: hs_time(at),
            }
            if object_type == "deals":
                props.setdefault("pipeline", "default")
            history: dict[str, list[HistoryEntry]] = {}
            for name, value in properties.items():
                self._known(object_type, name)
                text = None if value is None else str(value)
                props[name] = text
                if text is not None:
                    history[name] = [HistoryEntry(text, at, source_type)]
            record = HsRecord(
                id=rid,
                object_type=object_type,
                properties=props,
                history=history,
                created=at,
                modified=at,
                versions=[],
            )
            record.index_version(at, self.search_lag if index_delay is None else index_delay)
            table[rid] = record
            self.version += 1
            return rid

    def update(
        self,
        object_type: str,
        rid: str,
        at: datetime,
        changes: dict[str, Any],
        *,
        index_delay: timedelta | None = None,
        source_type: str = "CRM_UI",
    ) -> None:
        """Set properties at `at`: history grows for values that differ, modified time moves."""
        at = ms_precision(at)
        with self.lock:
            record = self.objects[object_type][rid]
            for name, value in changes.items():
                self._known(object_type, name)
                text = None if value is None else str(value)
                if record.properties.get(name) == text:
                    continue
                record.properties[name] = text
                # Clearing a property is history too: HubSpot lists it as an empty value.
                entry = HistoryEntry(text or "", at, source_type)
                record.history.setdefault(name, []).append(entry)
            self._touch(record, at, index_delay)

    def move(
        self,
        object_type: str,
        rid: str,
        stage: str,
        at: datetime,
        *,
        field_name: str | None = None,
        index_delay: timedelta | None = None,
    ) -> None:
        name = field_name or ("dealstage" if object_type == "deals" else "lifecyclestage")
        self.update(object_type, rid, at, {name: stage}, index_delay=index_delay)

    def touch_many(self, object_type: str, ids: list[str], at: datetime) -> None:
        """A bulk job: many records modified at the very same millisecond (no property change)."""
        at = ms_precision(at)
        with self.lock:
            for rid in ids:
                self._touch(self.objects[object_type][rid], at, None)

    def archive(self, object_type: str, rid: str, at: datetime) -> None:
        """Deleted in HubSpot: out of search and lists, still readable with `archived=true`."""
        at = ms_precision(at)
        with self.lock:
            record = self.objects[object_type][rid]
            record.archived, record.archived_at = True, at
            self.version += 1

    def _touch(self, record: HsRecord, at: datetime, index_delay: timedelta | None) -> None:
        record.modified = at
        record.properties[modified_property(record.object_type)] = hs_time(at)
        if record.object_type == "contacts":
            record.properties["hs_lastmodifieddate"] = hs_time(at)
        record.index_version(at, self.search_lag if index_delay is None else index_delay)
        self.version += 1

    # -- reads -----------------------------------------------------------------------------
    def by_modified(self, object_type: str) -> list[tuple[int, int, str]]:
        """(modified ms, numeric id, id) of every indexed version of every record, sorted;
        rebuilt only after writes. Search keeps an entry only if it is the version visible
        at the time of the query."""
        with self.lock:
            if self._index_version.get(object_type) != self.version:
                table = self.objects.get(object_type, {})
                self._index[object_type] = sorted(
                    {
                        (v.modified_ms, _id_number(r.id), r.id)
                        for r in table.values()
                        for v in r.versions
                    }
                )
                self._index_version[object_type] = self.version
            return self._index[object_type]

    def by_id(self, object_type: str) -> list[tuple[int, str]]:
        """(numeric id, id) of every record, sorted; for list paging by `after`."""
        with self.lock:
            key = object_type + "#id"
            if self._index_version.get(key) != self.version:
                table = self.objects.get(object_type, {})
                self._ids_index[object_type] = sorted((_id_number(r), r) for r in table)
                self._index_version[key] = self.version
            return self._ids_index[object_type]

    def get(self, object_type: str, rid: str) -> HsRecord | None:
        with self.lock:
            return self.objects.get(object_type, {}).get(rid)


def _id_number(rid: str) -> int:
    return int(rid) if rid.isdigit() else 0
