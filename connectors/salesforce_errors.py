"""Salesforce's errors in words a sales-ops person can act on.

The ones that need the most help are `INVALID_FIELD` and `INVALID_TYPE`: Salesforce names the
column or object it does not know, and the person needs the line of the mapping file that asked
for it. They become typed errors naming the field or object; the pipeline, which holds the
mapping, adds the file:line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ga4sync.connectors.errors import UnknownCrmField, UnknownCrmObject
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.errors import ConnectorError

if TYPE_CHECKING:  # the SDK (zeep, lxml) loads only when a Salesforce connector runs
    from simple_salesforce.exceptions import SalesforceError

_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)' on (?:entity|sobject of type) '?(\w+)'?")


class QueryLocatorExpired(ConnectorError):
    """INVALID_QUERY_LOCATOR: the `nextRecordsUrl` cursor is gone (idle about 15 minutes, or
    pushed out by newer cursors: an org keeps about 10 open per user)."""


class OrgBusy(Exception):
    """REQUEST_LIMIT_EXCEEDED for a concurrency limit: the org is busy now, try again soon."""


def is_concurrency_limit(exc: SalesforceError) -> bool:
    """Salesforce answers REQUEST_LIMIT_EXCEEDED both for the daily quota (`TotalRequests
    Limit exceeded.`) and for too many long-running requests at once (`ConcurrentPerOrgLongTxn
    Limit exceeded`, `ConcurrentRequests (Concurrent API Requests) Limit exceeded.`). Only the
    second clears by itself within seconds; anything not naming a concurrent limit is taken
    for the quota, which waiting does not help."""
    return _first_message(exc).lstrip().startswith("Concurrent")


def sf_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "?"))
    return "?"


def sf_message(exc: SalesforceError) -> str:
    """`CODE: message`, with the echoed SOQL cut off (it can be kilobytes of ids)."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = str(content[0].get("message", ""))
        lines = [ln for ln in text.splitlines() if ln.strip()]
        tail = lines[-1] if lines else ""
        return f"{content[0].get('errorCode', '?')}: {tail}".strip()
    text = str(content)
    if "<html" in text[:500].lower() or "<!doctype" in text[:500].lower():
        title = re.search(r"<title>([^<]{1,120})</title>", text, re.IGNORECASE)
        page = f" ({title.group(1).strip()})" if title else ""
        return (
            f"an HTML page{page} instead of Salesforce's JSON: a proxy, firewall or "
            "maintenance page stood in between"
        )
    return text[:300]


def refused_field(exc: SalesforceError) -> tuple[str, str] | None:
    """(object, field) Salesforce refused with INVALID_FIELD, or None for another error."""
    if sf_code(exc) != "INVALID_FIELD":
        return None
    m = _NO_SUCH_COLUMN.search(_first_message(exc))
    return None if m is None else (m.group(2), m.group(1))


MULTI_CURRENCY_HINT = (
    "; CurrencyIsoCode exists only in orgs with multiple currencies enabled: mark the param "
    "`optional: true` so it falls back to the mapping's `currency:`"
)


def unknown_field_error(entity: str, name: str, *, exists: bool | None) -> UnknownCrmField:
    """What is really wrong with a refused field. Salesforce answers INVALID_FIELD both for a
    field the org does not have and for one hidden from the integration user by field-level
    security; `exists` (from the org's FieldDefinition, None when that could not be read)
    tells the two apart, as the fix differs: the mapping, or the user's permissions."""
    if exists is True:
        what = (
            f"`{name}` exists on {entity} but the integration user cannot see it "
            f"(field-level security; Salesforce answers INVALID_FIELD): give the user's profile "
            f"or a permission set read access (Setup > Object Manager > {entity} > Fields & "
            f"Relationships > {name} > Set Field-Level Security)"
        )
    elif exists is False:
        what = (
            f"Salesforce has no field `{name}` on {entity} in this org (INVALID_FIELD); use "
            "the field's API name from Setup > Object Manager (custom fields end in __c)"
            + (MULTI_CURRENCY_HINT if name == "CurrencyIsoCode" else "")
        )
    else:
        what = (
            f"Salesforce has no field `{name}` on {entity} (INVALID_FIELD); use the field's API "
            "name from Setup > Object Manager (custom fields end in __c), and check the "
            "integration user can see it (field-level security)"
        )
    in_history = name in ("Field", "OldValue", "NewValue") or entity.endswith("History")
    return UnknownCrmField(entity, name, what, in_history=in_history)


def unknown_object_error(exc: SalesforceError, spec: FetchSpec) -> UnknownCrmObject | None:
    """The object or history object Salesforce does not have (INVALID_TYPE), or None."""
    if sf_code(exc) != "INVALID_TYPE":
        return None
    m = re.search(r"sObject type '(\w+)' is not supported", _first_message(exc))
    name = m.group(1) if m else "?"
    if name == spec.object_type:
        what = f"Salesforce has no object `{name}` the integration user can read (INVALID_TYPE)"
        return UnknownCrmObject(name, what, is_history=False)
    what = (
        f"Salesforce has no history object `{name}` (INVALID_TYPE): turn on field history "
        f"tracking for {spec.object_type}.{spec.stage_field}, name the right "
        "`history_object`, or use `detection: snapshot`"
    )
    return UnknownCrmObject(name, what, is_history=True)


def _first_message(exc: SalesforceError) -> str:
    content: list[object] = exc.content if isinstance(exc.content, list) else []
    first = content[0] if content else None
    return str(first.get("message", "")) if isinstance(first, dict) else ""
