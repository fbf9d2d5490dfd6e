"""Errors a connector raises about what it was asked to fetch, with the names involved.

The connector knows which field or object the CRM refused, but not where the mapping file
asked for it; the pipeline turns these into `file:line` problems of the mapping it actually
runs (pipeline/fetch_problems.py), instead of the connector re-reading YAML from disk.
"""

from __future__ import annotations

from ga4sync.core.errors import ConnectorError


class UnknownCrmField(ConnectorError):
    """The CRM has no such field on the object, or the integration user cannot see it."""

    def __init__(self, object_type: str, field: str, detail: str, *, in_history: bool) -> None:
        self.object_type = object_type
        self.field = field
        self.detail = detail
        """What is wrong and how to fix it, in the CRM's words (no file position)."""
        self.in_history = in_history
        """The refused field belongs to the history object, not to the mapping's object."""
        super().__init__(detail)


class UnknownCrmObject(ConnectorError):
    """The CRM has no such object (or its history object) that the integration user can read."""

    def __init__(self, object_type: str, detail: str, *, is_history: bool) -> None:
        self.object_type = object_type
        self.detail = detail
        self.is_history = is_history
        """The missing object is the history object derived from, or named by, the mapping."""
        super().__init__(detail)
