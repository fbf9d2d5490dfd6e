"""Salesforce's errors in words a sales-ops person can act on.

The one that needs the most help is `INVALID_FIELD`: Salesforce names the column it does not
know, and the person needs the line of the mapping file that asked for it.
"""

from __future__ import annotations

import re

from ga4sync.core.yamlsource import YamlSourceError, load_yaml_file
from ga4sync.mapping.checks import field_refs
from ga4sync.mapping.model import MappingFile
from simple_salesforce.exceptions import SalesforceError

_NO_SUCH_COLUMN = re.compile(r"No such column '([^']+)' on (?:entity|sobject of type) '?(\w+)'?")


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


def unknown_field_problem(
    exc: SalesforceError, mapping: MappingFile, mapping_path: str | None
) -> str | None:
    """`file:line:col: key: Salesforce has no field ...` for an INVALID_FIELD error, or None."""
    if sf_code(exc) != "INVALID_FIELD":
        return None
    content: list[object] = exc.content if isinstance(exc.content, list) else []
    first = content[0] if content else None
    text = str(first.get("message", "")) if isinstance(first, dict) else ""
    m = _NO_SUCH_COLUMN.search(text)
    if m is None:
        return None
    name, entity = m.group(1), m.group(2)
    what = (
        f"Salesforce has no field `{name}` on {entity} (INVALID_FIELD); use the field's API "
        "name from Setup > Object Manager (custom fields end in __c), and check the "
        "integration user can see it (field-level security)"
    )
    refs = [loc for loc, ref in field_refs(mapping) if ref == name]
    if not refs:
        if name in ("Field", "OldValue", "NewValue") or entity.endswith("History"):
            return f"{mapping_path or 'mapping'}: history_object: {what}"
        return f"{mapping_path or 'mapping'}: {what}"
    if mapping_path is None:
        return f"mapping {'.'.join(str(p) for p in refs[0])}: {what}"
    try:
        doc = load_yaml_file(mapping_path)
    except YamlSourceError:
        return f"{mapping_path}: {'.'.join(str(p) for p in refs[0])}: {what}"
    lines = [f"{doc.where(loc)}: {_dotted(loc)}: {what}" for loc in refs]
    return "\n".join(lines)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def unknown_object_problem(
    exc: SalesforceError, mapping: MappingFile, mapping_path: str | None
) -> str | None:
    """`file:line:col: history_object: ...` when the object or its history does not exist."""
    if sf_code(exc) != "INVALID_TYPE":
        return None
    content: list[object] = exc.content if isinstance(exc.content, list) else []
    first = content[0] if content else None
    text = str(first.get("message", "")) if isinstance(first, dict) else ""
    m = re.search(r"sObject type '(\w+)' is not supported", text)
    name = m.group(1) if m else "?"
    if name == mapping.object:
        key: tuple[str | int, ...] = ("object",)
        what = f"Salesforce has no object `{name}` the integration user can read (INVALID_TYPE)"
    else:
        key = ("history_object",) if mapping.history_object else ("detection",)
        what = (
            f"Salesforce has no history object `{name}` (INVALID_TYPE): turn on field history "
            f"tracking for {mapping.object}.{mapping.stage_field}, name the right "
            "`history_object`, or use `detection: snapshot`"
        )
    if mapping_path is None:
        return f"mapping {_dotted(key)}: {what}"
    try:
        where = load_yaml_file(mapping_path).where(key)
    except YamlSourceError:
        where = mapping_path
    return f"{where}: {_dotted(key)}: {what}"
