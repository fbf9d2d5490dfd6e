"""What a connector is asked to fetch: the few facts of a mapping file a CRM reader needs.

Connectors never see the mapping file itself. The pipeline derives a `FetchSpec` from the
mapping it is running (pipeline/fetch_spec.py), so a connector cannot depend on how mappings
are written, and a mapping edit reaches the connector only through these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Detection = Literal["auto", "history", "snapshot"]


@dataclass(frozen=True)
class CsvLayout:
    """Which columns of a CSV export hold the record id, the time and the previous stage."""

    record_id_column: str
    time_column: str
    time_format: str | None = None
    timezone: str | None = None
    from_column: str | None = None
    number_columns: tuple[str, ...] = ()
    """Columns read as numbers, so the cell's decimal notation is checked before mapping."""


@dataclass(frozen=True)
class FetchSpec:
    """One object's stage field and the fields to read with it."""

    object_type: str
    stage_field: str
    record_fields: tuple[str, ...]
    """Every field the mapping reads (stage and client id first): nothing else is fetched."""
    optional_fields: tuple[str, ...] = ()
    """Fields of `record_fields` the org may lack (`optional: true` params): a connector
    leaves out one the CRM does not have, and the param falls back to its default."""
    detection: Detection = "auto"
    history_object: str | None = None
    csv: CsvLayout | None = None
    version: str = ""
    """A digest of what the mapping means: a CSV file imported under another version is
    read again (its transition keys keep that from sending anything twice)."""
    origin: str = "the mapping file"
    """Where the spec came from (the mapping's path), for messages a person acts on."""
