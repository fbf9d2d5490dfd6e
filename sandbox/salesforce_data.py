"""The Salesforce org the sandbox serves: records, history rows, and how a stage move writes them.

Mirrors what Salesforce does on a stage change: the record's StageName, LastModifiedDate and
SystemModstamp change, and an insert-only OpportunityHistory row holding the *new* values is
written (also for amount/close-date edits, where the stage stays the same). Other objects
(Lead, custom objects) write `<Object>History` / `<Object>__History` rows with Field, OldValue
and NewValue, but only for fields whose history tracking is on, as in a real org.
"""

from __future__ import annotations

import itertools
import re
import threading
from datetime import UTC, datetime
from typing import Any

from ga4sync.sandbox.salesforce_access import OrgAccess

SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
"""A record id as Salesforce accepts it in a query: 15 or 18 letters and digits."""


SF_TIME = "%Y-%m-%dT%H:%M:%S.000+0000"

HISTORY_OBJECT = {"Opportunity": "OpportunityHistory", "Lead": "LeadHistory"}
PARENT_INDEXED = {"OpportunityHistory": "OpportunityId", "LeadHistory": "LeadId"}
"""History objects indexed by parent id, so per-record lookups stay fast at bench sizes."""


def field_history_object(obj: str) -> tuple[str, str]:
    """`Lead` -> (`LeadHistory`, `LeadId`); `Project__c` -> (`Project__History`, `ParentId`)."""
    if obj.endswith("__c"):
        return obj[: -len("__c")] + "__History", "ParentId"
    return obj + "History", obj + "Id"


OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
    "New",
    "Working",
    "Nurturing",
    "Qualified",
    "Unqualified",
)


def _named(names: dict[str, str], value: Any) -> Any:
    return names.get(value, value) if isinstance(value, str) else value


def sf_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime(SF_TIME)


def sf_id(prefix: str, n: int) -> str:
    """18-character ids shaped like Salesforce's (3-char key prefix, base-36 counter)."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    body = ""
    while n:
        n, r = divmod(n, 36)
        body = digits[r] + body
    return (prefix + body.rjust(12, "0") + "AAA")[:18]


class SalesforceData:
    """Thread-safe in-memory org. Times are datetimes; the server formats them on the wire."""

    def __init__(self, *, multi_currency: bool = True) -> None:
        self.lock = threading.RLock()
        self.multi_currency = multi_currency
        """Multi-currency orgs have `CurrencyIsoCode` on every currency-bearing object; a
        single-currency org (most small ones) has no such field, and a query naming it is
        INVALID_FIELD."""
        self.hidden: dict[str, set[str]] = {}
        """Fields that exist but the integration user cannot see (field-level security):
        describe leaves them out and a query naming them is INVALID_FIELD, as in a real org;
        only FieldDefinition (the org's metadata) lists them."""
        self.access = OrgAccess()
        """The integration user's record access (sharing): who it is, what it sees."""
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "Opportunity": {},
            "OpportunityHistory": {},
            "Lead": {},
            "LeadHistory": {},
        }
        self._ids = itertools.count(1)
        self.tracked: dict[str, set[str]] = {"Lead": {"Status"}}
        """Fields with history tracking on, per object (Setup > Set History Tracking)."""
        self.lookup_names: dict[tuple[str, str], dict[str, str]] = {}
        """Tracked lookup fields: referenced id -> the name the UI shows. Salesforce writes two
        history rows per change of a lookup: one with the ids (DataType `EntityId`) and one
        with the names, both at the same CreatedDate."""
        self.children: dict[str, dict[str, list[str]]] = {h: {} for h in PARENT_INDEXED}
        self.picklists: dict[tuple[str, str], tuple[str, ...]] = {
            ("Opportunity", "StageName"): OPPORTUNITY_STAGES,
            ("Lead", "Status"): LEAD_STATUSES,
        }
        """Picklist values describe lists (the org's defaults); empty means not a picklist."""
        self.field_names: dict[str, set[str]] = {
            "Opportunity": {
                "Id",
                "Name",
                "StageName",
                "Amount",
                "CurrencyIsoCode",
                "CloseDate",
                "Probability",
                "LeadSource",
                "GA_Client_ID__c",
                "GA_Session_ID__c",
                "CreatedDate",
                "LastModifiedDate",
                "SystemModstamp",
                "IsDeleted",
                "IsClosed",
                "IsWon",
                "Type",
                "OwnerId",
                "AccountId",
            },
            "OpportunityHistory": {
                "Id",
                "OpportunityId",
                "StageName",
                "Amount",
                "CloseDate",
                "Probability",
                "ExpectedRevenue",
                "ForecastCategory",
                "PrevAmount",
                "PrevCloseDate",
                "CreatedDate",
                "CreatedById",
                "SystemModstamp",
                "IsDeleted",
            },
            "Lead": {
                "Id",
                "FirstName",
                "LastName",
                "Company",
                "Email",
                "Phone",
                "Status",
                "LeadSource",
                "IsConverted",
                "ConvertedDate",
                "ConvertedOpportunityId",
                "GA_Client_ID__c",
                "GA_Session_ID__c",
                "CreatedDate",
                "LastModifiedDate",
                "SystemModstamp",
                "IsDeleted",
            },
            "LeadHistory": {
                "Id",
                "LeadId",
                "Field",
                "OldValue",
                "NewValue",
                "DataType",
                "CreatedDate",
                "CreatedById",
                "IsDeleted",
            },
        }

        if not multi_currency:
            self.field_names["Opportunity"].discard("CurrencyIsoCode")

    def visible_fields(self, obj: str) -> set[str] | None:
        """What the integration user can query and describe on `obj` (None: no such object)."""
        names = self.field_names.get(obj)
        return None if names is None else names - self.hidden.get(obj, set())

    def hide_field(self, obj: str, name: str) -> None:
        """Take read access away from the integration user (the field stays in the org)."""
        with self.lock:
            self.hidden.setdefault(obj, set()).add(name)

    def field_definitions(self) -> list[dict[str, Any]]:
        """FieldDefinition rows: every field of every object, hidden or not, and whether its
        history is tracked (Setup > Object Manager > object > Set History Tracking)."""
        with self.lock:
            return [
                {
                    "Id": f"{obj}.{name}",
                    "QualifiedApiName": name,
                    "EntityDefinition.QualifiedApiName": obj,
                    "IsFieldHistoryTracked": name in self.tracked.get(obj, set()),
                }
                for obj, names in self.field_names.items()
                for name in sorted(names)
            ]

    def new_id(self, prefix: str) -> str:
        return sf_id(prefix, next(self._ids))

    def add_field(self, obj: str, name: str) -> None:
        self.field_names.setdefault(obj, {"Id"}).add(name)

    def define_object(self, obj: str, fields: list[str], *, tracked: tuple[str, ...] = ()) -> None:
        """A custom object with the system fields, and its `__History` object when tracked."""
        with self.lock:
            self.objects.setdefault(obj, {})
            self.field_names[obj] = {
                "Id",
                "Name",
                "CreatedDate",
                "LastModifiedDate",
                "SystemModstamp",
                "IsDeleted",
                *fields,
            }
            if tracked:
                self.tracked[obj] = set(tracked)
                history, parent = field_history_object(obj)
                self.objects.setdefault(history, {})
                self.children.setdefault(history, {})
                PARENT_INDEXED.setdefault(history, parent)
                self.field_names[history] = {
                    "Id",
                    parent,
                    "Field",
                    "OldValue",
                    "NewValue",
                    "DataType",
                    "CreatedDate",
                    "CreatedById",
                    "IsDeleted",
                }

    # -- any object with field history (Lead, custom objects) -----------------------------
    def create_record(
        self,
        obj: str,
        at: datetime,
        *,
        prefix: str = "a00",
        record_id: str | None = None,
        **fields: Any,
    ) -> str:
        with self.lock:
            rid = record_id or self.new_id(prefix)
            for name in fields:
                self.add_field(obj, name)
            record = {
                "Id": rid,
                "CreatedDate": at,
                "LastModifiedDate": at,
                "SystemModstamp": at,
                "IsDeleted": False,
                **fields,
            }
            self.objects.setdefault(obj, {})[rid] = record
            if self.tracked.get(obj):
                self._field_history(obj, rid, "created", None, None, at)
            return rid

    def update_record(self, obj: str, rid: str, at: datetime, **changes: Any) -> None:
        """Writes one history row per tracked field whose value really changed."""
        with self.lock:
            record = self.objects[obj][rid]
            for name, new in changes.items():
                old = record.get(name)
                if name in self.tracked.get(obj, set()) and old != new:
                    names = self.lookup_names.get((obj, name))
                    if names is not None:
                        self._field_history(obj, rid, name, old, new, at, "EntityId")
                        self._field_history(
                            obj, rid, name, _named(names, old), _named(names, new), at
                        )
                    else:
                        self._field_history(obj, rid, name, old, new, at)
                record[name] = new
            record["LastModifiedDate"] = record["SystemModstamp"] = at

    def delete_record(self, obj: str, rid: str, at: datetime) -> None:
        with self.lock:
            record = self.objects[obj][rid]
            record["IsDeleted"] = True
            record["SystemModstamp"] = at
            history, _ = field_history_object(obj)
            for hid in self.children.get(history, {}).get(rid, []):
                self.objects[history][hid]["IsDeleted"] = True

    def insert_raw(self, obj: str, row: dict[str, Any]) -> None:
        """A row stored as given, even malformed (no Id, a bad time), for what-if tests."""
        with self.lock:
            key = str(row.get("Id") or f"raw-{next(self._ids)}")
            self.objects.setdefault(obj, {})[key] = {"IsDeleted": False, **row}

    def _field_history(
        self, obj: str, rid: str, name: str, old: Any, new: Any, at: datetime, kind: str = "Text"
    ) -> None:
        history, parent = field_history_object(obj)
        hid = self.new_id("017")
        self.objects.setdefault(history, {})[hid] = {
            "Id": hid,
            parent: rid,
            "Field": name,
            "OldValue": old,
            "NewValue": new,
            "DataType": kind,
            "CreatedDate": at,
            "CreatedById": "005000000000001AAA",
            "IsDeleted": False,
        }
        self.children.setdefault(history, {}).setdefault(rid, []).append(hid)

    # -- leads -----------------------------------------------------------------------------
    def create_lead(self, at: datetime, *, status: str, **fields: Any) -> str:
        fields.setdefault("LastName", "Lead")
        fields.setdefault("Company", "Example Inc")
        return self.create_record(
            "Lead",
            at,
            prefix="00Q",
            Status=status,
            IsConverted=False,
            ConvertedDate=None,
            **fields,
        )

    def move_lead(self, lid: str, status: str, at: datetime, **changes: Any) -> None:
        self.update_record("Lead", lid, at, Status=status, **changes)

    def convert_lead(self, lid: str, at: datetime, *, status: str = "Closed - Converted") -> None:
        """Conversion sets IsConverted and the *date* of conversion; Status moves with it."""
        self.update_record(
            "Lead", lid, at, Status=status, IsConverted=True, ConvertedDate=at.date()
        )

    # -- opportunities ---------------------------------------------------------------------
    def create_opportunity(
        self, at: datetime, *, stage: str, record_id: str | None = None, **fields: Any
    ) -> str:
        with self.lock:
            oid = record_id or self.new_id("006")
            for name in fields:
                self.add_field("Opportunity", name)
            record = {
                "Id": oid,
                "Name": fields.pop("Name", f"Opportunity {oid[-6:]}"),
                "StageName": stage,
                "Amount": None,
                "CloseDate": at.date().isoformat(),
                "Probability": 10,
                "CreatedDate": at,
                "LastModifiedDate": at,
                "SystemModstamp": at,
                "IsDeleted": False,
            }
            if self.multi_currency:
                record["CurrencyIsoCode"] = "USD"
            record.update(fields)
            self.objects["Opportunity"][oid] = record
            self._history_row(record, at)
            return oid

    def move_opportunity(self, oid: str, stage: str, at: datetime, **changes: Any) -> None:
        with self.lock:
            record = self.objects["Opportunity"][oid]
            record["StageName"] = stage
            record.update(changes)
            record["LastModifiedDate"] = record["SystemModstamp"] = at
            record["IsClosed"] = stage.lower().startswith("closed")
            record["IsWon"] = stage.lower() == "closed won"
            self._history_row(record, at)

    def edit_opportunity(self, oid: str, at: datetime, **changes: Any) -> None:
        """An edit that is not a stage move; amount/close-date edits still write history."""
        with self.lock:
            record = self.objects["Opportunity"][oid]
            record.update(changes)
            record["LastModifiedDate"] = record["SystemModstamp"] = at
            if {"Amount", "CloseDate", "Probability"} & set(changes):
                self._history_row(record, at)

    def delete_opportunity(self, oid: str, at: datetime) -> None:
        """Recycle bin: hidden from query, visible to queryAll, history rows go with it."""
        with self.lock:
            record = self.objects["Opportunity"][oid]
            record["IsDeleted"] = True
            record["SystemModstamp"] = at
            for hid in self.children["OpportunityHistory"].get(oid, []):
                self.objects["OpportunityHistory"][hid]["IsDeleted"] = True

    def rename_stage(self, old: str, new: str) -> None:
        """Renaming a picklist value rewrites the stored values, history included."""
        with self.lock:
            key = ("Opportunity", "StageName")
            self.picklists[key] = tuple(new if v == old else v for v in self.picklists[key])
            for obj in ("Opportunity", "OpportunityHistory"):
                for row in self.objects[obj].values():
                    if row.get("StageName") == old:
                        row["StageName"] = new

    def _history_row(self, record: dict[str, Any], at: datetime) -> None:
        hid = self.new_id("008")
        self.objects["OpportunityHistory"][hid] = {
            "Id": hid,
            "OpportunityId": record["Id"],
            "StageName": record["StageName"],
            "Amount": record.get("Amount"),
            "CloseDate": record.get("CloseDate"),
            "Probability": record.get("Probability"),
            "CreatedDate": at,
            "SystemModstamp": at,
            "CreatedById": "005000000000001AAA",
            "IsDeleted": False,
        }
        self.children["OpportunityHistory"].setdefault(record["Id"], []).append(hid)

    def rows(
        self, obj: str, include_deleted: bool, *, only: tuple[str, list[Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of `obj`; `only=(field, values)` narrows by Id or a history's parent id first."""
        with self.lock:
            table = self.objects.get(obj)
            if table is None:
                return []
            if only is None:
                candidates: Any = table.values()
            elif only[0] == "Id":
                candidates = [table[v] for v in only[1] if isinstance(v, str) and v in table]
            else:
                index = self.children.get(obj, {})
                candidates = [
                    table[h] for v in only[1] if isinstance(v, str) for h in index.get(v, [])
                ]
            return [dict(r) for r in candidates if include_deleted or not r.get("IsDeleted")]

    def visible(self, obj: str, row: dict[str, Any]) -> bool:
        """Whether sharing lets the integration user see this row (history rows follow their
        record)."""
        with self.lock:
            return self.access.visible(
                obj, row, lambda o, rid: self.objects.get(o, {}).get(rid) if rid else None
            )

    def indexed_field(self, obj: str) -> str | None:
        """The parent-id field the sandbox can look rows up by (besides Id)."""
        return PARENT_INDEXED.get(obj)
