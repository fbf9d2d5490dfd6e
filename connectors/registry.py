"""Which connector types exist: settings models for the config and a factory for the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ga4sync.connectors.base import Connector
from ga4sync.connectors.csv import CsvConnector, CsvSettings
from ga4sync.connectors.hubspot import HubspotConnector, HubspotSettings
from ga4sync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from ga4sync.connectors.salesforce_history import KnownKeys, SnapshotLookup
from ga4sync.mapping.model import MappingFile

AnyConnectorSettings = SalesforceSettings | HubspotSettings | CsvSettings


def build_connector(
    settings: Any,
    mapping: MappingFile,
    *,
    base_dir: Path,
    mapping_path: str | None = None,
    snapshot_lookup: SnapshotLookup | None = None,
    known_keys: KnownKeys | None = None,
    **extra: Any,
) -> Connector:
    """One connector instance for one run, reading only the fields the mapping uses.

    `mapping_path` lets a CRM error about a field cite the mapping's line; `snapshot_lookup`
    (record ids -> last stage the state store saw) serves snapshot-diff detection;
    `known_keys` (keys -> those already captured) spares re-fetching the overlap's records.
    """
    if isinstance(settings, SalesforceSettings):
        ca = settings.ca_file
        if ca and not Path(ca).is_absolute():
            settings = settings.model_copy(update={"ca_file": str(base_dir / ca)})
        return SalesforceConnector(
            settings,
            mapping=mapping,
            mapping_path=mapping_path,
            snapshot_lookup=snapshot_lookup,
            known_keys=known_keys,
            secret_base_dir=base_dir,
        )
    if isinstance(settings, HubspotSettings):
        ca = settings.ca_file
        if ca and not Path(ca).is_absolute():
            settings = settings.model_copy(update={"ca_file": str(base_dir / ca)})
        return HubspotConnector(
            settings,
            object_type=mapping.object,
            stage_field=mapping.stage_field,
            record_fields=mapping.record_fields(),
            secret_base_dir=base_dir,
            **extra,
        )
    if isinstance(settings, CsvSettings):
        return CsvConnector(
            settings,
            mapping=mapping,
            base_dir=base_dir,
            mapping_path=mapping_path,
            done_lookup=snapshot_lookup,
        )
    raise TypeError(f"unknown connector settings {type(settings).__name__}")
