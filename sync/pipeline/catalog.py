"""Ask the CRM which fields an object really has, so validate can say "did you mean StageName?".

Salesforce answers `GET /services/data/vXX/sobjects/{object}/describe`; HubSpot answers
`GET /crm/v3/properties/{object}` (and its pipelines). Both go through the connector the
mapping would run with (`connectors.registry.build_connector`), so validate uses the same
credentials, CA and instance as a real run.
"""

from __future__ import annotations

from pathlib import Path

from ga4sync.connectors.base import Connector
from ga4sync.connectors.registry import AnyConnectorSettings, build_connector
from ga4sync.core.secrets import redact
from ga4sync.mapping.checks import FieldCatalog
from ga4sync.mapping.load import LoadedMapping
from ga4sync.pipeline.fetch_spec import fetch_spec


class CatalogUnavailable(Exception):
    """The field list could not be fetched; validate goes on without checking field names."""


def fetch_catalog(
    settings: AnyConnectorSettings, mapping: LoadedMapping, *, base_dir: Path
) -> FieldCatalog:
    """The object's field names, from the CRM the connector talks to."""
    obj = mapping.model.object
    try:
        connector = build_connector(settings, fetch_spec(mapping), base_dir=base_dir)
    except Exception as exc:  # noqa: BLE001 - any failure only means "not checked"
        raise CatalogUnavailable(redact(f"cannot connect: {exc}")) from None
    try:
        fields = connector.field_catalog()
        if fields is None:
            raise CatalogUnavailable(f"{type(connector).__name__} cannot list its fields")
        ambiguous = _ambiguous_labels(connector)
        warnings = tuple(connector.setup_warnings())
    except CatalogUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the CRM's own error, shown to the person
        raise CatalogUnavailable(redact(f"{type(exc).__name__}: {exc}")[:300]) from None
    finally:
        connector.close()
    return FieldCatalog(obj, fields.names, fields.source, fields.stages, ambiguous, warnings)


def _ambiguous_labels(connector: Connector) -> dict[str, tuple[str, ...]]:
    """Labels shared by stages of several pipelines (HubSpot's `Closed won` in each one).

    The run refuses such a label (pipeline/stage_vocabulary.py); validate says so before the
    daemon does.
    """
    vocabulary = connector.stage_vocabulary()
    if vocabulary is None:
        return {}
    by_label: dict[str, dict[str, str]] = {}
    for option in vocabulary.options:
        if option.group:
            qualified = f"{option.group}/{option.label}"
            by_label.setdefault(option.label.strip().lower(), {})[option.id] = qualified
    return {label: tuple(sorted(ids.values())) for label, ids in by_label.items() if len(ids) > 1}
