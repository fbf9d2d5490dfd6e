"""HubSpot's JSON shapes: records, history, pipelines, properties, error and 429 bodies.

Kept apart from the server's routing and limits so each shape can be read against
crm-apis.md §4.2 / §5.2 on its own.
"""

from __future__ import annotations

import uuid
from typing import Any

from ga4sync.sandbox.http import Response
from ga4sync.sandbox.hubspot_data import (
    HistoryEntry,
    HsRecord,
    Pipeline,
    PropertyDef,
    hs_time,
    modified_property,
)


def hs_error(status: int, category: str, message: str, **extra: Any) -> Response:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    body.update(extra)
    return Response.json(body, status)


def rate_limited(policy: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }
    return Response.json(body, 429, headers)


def search_json(record: HsRecord, wanted: list[str]) -> dict[str, Any]:
    names = {*wanted, "hs_object_id", "createdate", modified_property(record.object_type)}
    props = {n: record.properties.get(n) for n in names}
    return {
        "id": record.id,
        "properties": props,
        "createdAt": hs_time(record.created),
        "updatedAt": hs_time(record.modified),
        "archived": False,
    }


def record_json(
    record: HsRecord, props: list[str] | None, history: list[str] | None
) -> dict[str, Any]:
    names = {
        *(props or []),
        "hs_object_id",
        "createdate",
        modified_property(record.object_type),
    }
    out: dict[str, Any] = {
        "id": record.id,
        "properties": {n: record.properties.get(n) for n in names},
        "createdAt": hs_time(record.created),
        "updatedAt": hs_time(record.modified),
        "archived": record.archived,
    }
    if record.archived_at is not None:
        out["archivedAt"] = hs_time(record.archived_at)
    if history:
        out["propertiesWithHistory"] = {
            name: [history_entry_json(e) for e in reversed(record.history.get(name, []))]
            for name in history
        }
    return out


def history_entry_json(e: HistoryEntry) -> dict[str, Any]:
    """A `propertiesWithHistory` entry; a change made in the UI names who made it."""
    out: dict[str, Any] = {
        "value": e.value,
        "timestamp": hs_time(e.at),
        "sourceType": e.source_type,
    }
    if e.source_type == "CRM_UI":
        out.update({"sourceId": "userId:2960310", "updatedByUserId": 2960310})
    return out


# -- schema ------------------------------------------------------------------------------


def pipeline_json(p: Pipeline) -> dict[str, Any]:
    stamp = "2024-01-01T00:00:00.000Z"
    return {
        "id": p.id,
        "label": p.label,
        "displayOrder": 0,
        "archived": False,
        "createdAt": stamp,
        "updatedAt": stamp,
        "stages": [
            {
                "id": s.id,
                "label": s.label,
                "displayOrder": i,
                "metadata": {
                    "isClosed": "true" if s.is_closed else "false",
                    "probability": f"{s.probability:.1f}",
                },
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                "archived": False,
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            for i, s in enumerate(p.stages)
        ],
    }


def property_json(p: PropertyDef) -> dict[str, Any]:
    field_type = {"enumeration": "select", "datetime": "date", "number": "number"}.get(
        p.type, "text"
    )
    return {
        "name": p.name,
        "label": p.label,
        "type": p.type,
        "fieldType": field_type,
        "groupName": "dealinformation",
        "description": "",
        "options": [
            {"label": label, "value": value, "displayOrder": i, "hidden": False}
            for i, (value, label) in enumerate(p.options)
        ],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": p.name == "hs_object_id",
        "hidden": False,
        "formField": True,
        "modificationMetadata": {
            "archivable": True,
            "readOnlyDefinition": True,
            "readOnlyValue": False,
        },
    }
