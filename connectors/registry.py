"""Which connector types exist: settings models for the config and a factory for the pipeline."""

from __future__ import annotations

from pathlib import Path

from ga4sync.connectors.base import Connector
from ga4sync.connectors.csv import CsvConnector, CsvSettings
from ga4sync.connectors.hubspot_settings import HubspotSettings
from ga4sync.connectors.salesforce_history import KnownKeys, SnapshotLookup
from ga4sync.connectors.salesforce_settings import SalesforceSettings
from ga4sync.connectors.spec import FetchSpec

AnyConnectorSettings = SalesforceSettings | HubspotSettings | CsvSettings


def build_connector(
    settings: AnyConnectorSettings,
    spec: FetchSpec,
    *,
    base_dir: Path,
    snapshot_lookup: SnapshotLookup | None = None,
    known_keys: KnownKeys | None = None,
) -> Connector:
    """One connector instance for one run, reading only the fields the spec names.

    `snapshot_lookup` (record ids -> last stage the state store saw) serves snapshot-diff
    detection and CSV's imported-file marks; `known_keys` (keys -> those already captured)
    spares re-fetching the overlap's records. Relative CA paths are relative to the config.
    A CRM connector's module (its client, requests, tenacity) is imported here, when one of
    its kind runs, not with the config: a CSV-only run never loads them.
    """
    if isinstance(settings, SalesforceSettings):
        from ga4sync.connectors.salesforce import SalesforceConnector

        ca = settings.ca_file
        if ca and not Path(ca).is_absolute():
            settings = settings.model_copy(update={"ca_file": str(base_dir / ca)})
        return SalesforceConnector(
            settings,
            spec=spec,
            snapshot_lookup=snapshot_lookup,
            known_keys=known_keys,
            secret_base_dir=base_dir,
        )
    if isinstance(settings, HubspotSettings):
        from ga4sync.connectors.hubspot import HubspotConnector

        ca = settings.ca_file
        if ca and not Path(ca).is_absolute():
            settings = settings.model_copy(update={"ca_file": str(base_dir / ca)})
        return HubspotConnector(settings, spec=spec, secret_base_dir=base_dir)
    return CsvConnector(settings, spec=spec, base_dir=base_dir, done_lookup=snapshot_lookup)
