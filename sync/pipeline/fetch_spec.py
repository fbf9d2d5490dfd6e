"""A mapping file -> the `FetchSpec` its connector reads by (pure).

The connector gets only what it fetches with: object, stage field, the fields the rules
read, how to detect moves, and for CSV which columns hold the id and time. The digest keeps
the exact value CSV imports were marked with before the spec existed, so files already
imported are not read again after an upgrade.
"""

from __future__ import annotations

import hashlib

from ga4sync.connectors.spec import CsvLayout, FetchSpec
from ga4sync.mapping.load import LoadedMapping
from ga4sync.mapping.model import FieldParam, MappingFile


def fetch_spec(mapping: LoadedMapping) -> FetchSpec:
    """What the connector of this mapping reads; messages about it name `mapping.path`."""
    return spec_of(mapping.model, origin=mapping.path)


def spec_of(model: MappingFile, *, origin: str = "the mapping file") -> FetchSpec:
    csv = model.csv
    layout = (
        CsvLayout(
            record_id_column=csv.record_id_column,
            time_column=csv.time_column,
            time_format=csv.time_format,
            timezone=csv.timezone,
            from_column=csv.from_column,
            number_columns=tuple(number_fields(model)),
        )
        if csv is not None
        else None
    )
    return FetchSpec(
        object_type=model.object,
        stage_field=model.stage_field,
        record_fields=tuple(model.record_fields()),
        optional_fields=tuple(model.optional_fields()),
        detection=model.detection,
        history_object=model.history_object,
        csv=layout,
        version=mapping_version(model),
        origin=origin,
    )


def number_fields(mapping: MappingFile) -> list[str]:
    """Fields the mapping reads as numbers (params and user properties of type number)."""
    specs = [*mapping.user_properties.values()]
    for rule in mapping.rules:
        specs.extend(rule.params.values())
    return sorted({s.field for s in specs if isinstance(s, FieldParam) and s.type == "number"})


def mapping_version(mapping: MappingFile) -> str:
    """A digest of what the mapping means; a file imported under another version is re-read."""
    blob = mapping.model_dump_json(by_alias=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
