"""A connector's refusal of a field or object -> the mapping file's line that asked for it.

The connector only knows the names the CRM refused; the mapping the pipeline is running
(which may be the last good version while the file on disk is being edited) knows where
they were written, so the message points at the line that is really in use.
"""

from __future__ import annotations

from ga4sync.connectors.errors import UnknownCrmField, UnknownCrmObject
from ga4sync.core.errors import MappingError
from ga4sync.mapping.checks import editor_location, field_refs
from ga4sync.mapping.load import LoadedMapping

Loc = tuple[str | int, ...]


def mapping_error(exc: UnknownCrmField | UnknownCrmObject, mapping: LoadedMapping) -> MappingError:
    """One problem per place the mapping names the refused field, each with file:line:col."""
    if isinstance(exc, UnknownCrmObject):
        return MappingError(_object_problem(exc, mapping))
    refs = [loc for loc, ref in field_refs(mapping.model) if ref == exc.field]
    if not refs:
        key = "history_object: " if exc.in_history else ""
        return MappingError(f"{mapping.path}: {key}{exc.detail}")
    return MappingError("\n".join(f"{_where(mapping, loc)}: {exc.detail}" for loc in refs))


def _object_problem(exc: UnknownCrmObject, mapping: LoadedMapping) -> str:
    if not exc.is_history:
        key: Loc = ("object",)
    else:
        key = ("history_object",) if mapping.model.history_object else ("detection",)
    return f"{_where(mapping, key)}: {exc.detail}"


def _where(mapping: LoadedMapping, loc: Loc) -> str:
    """`file:line:col: dotted.key` (just the file when the mapping has no positions)."""
    place = mapping.document.where(loc) if mapping.document is not None else mapping.path
    return f"{place}: {editor_location(loc, [r.name for r in mapping.model.rules])}"
