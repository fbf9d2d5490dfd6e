"""Ask the CRM which fields an object really has, so validate can say "did you mean StageName?".

Salesforce answers `GET /services/data/vXX/sobjects/{object}/describe`; HubSpot answers
`GET /crm/v3/properties/{object}`. Both go through the connector's own authenticated client
(built by `connectors.registry.build_connector`), so validate uses the same credentials, CA and
instance as a real run. A connector may also offer `field_names()` itself; that wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ga4sync.connectors.registry import build_connector
from ga4sync.core.secrets import redact
from ga4sync.mapping.checks import FieldCatalog
from ga4sync.mapping.model import MappingFile


class CatalogUnavailable(Exception):
    """The field list could not be fetched; validate goes on without checking field names."""


def fetch_catalog(settings: Any, mapping: MappingFile, *, base_dir: Path) -> FieldCatalog:
    """The object's field names, from the CRM the connector talks to."""
    try:
        connector: Any = build_connector(settings, mapping, base_dir=base_dir)
    except Exception as exc:  # noqa: BLE001 - any failure only means "not checked"
        raise CatalogUnavailable(redact(f"cannot connect: {exc}")) from None
    try:
        names, source, stages = _describe(connector, mapping)
        ambiguous = _ambiguous_labels(connector)
    except CatalogUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the CRM's own error, shown to the person
        raise CatalogUnavailable(redact(f"{type(exc).__name__}: {exc}")[:300]) from None
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    return FieldCatalog(mapping.object, frozenset(names), source, stages, ambiguous)


def _ambiguous_labels(connector: Any) -> dict[str, tuple[str, ...]]:
    """Labels shared by stages of several pipelines (HubSpot's `Closed won` in each one).

    The connector refuses such a label at run time; validate says so before the daemon does.
    """
    vocabulary_of = getattr(connector, "stage_vocabulary", None)
    vocabulary = vocabulary_of() if callable(vocabulary_of) else None
    if vocabulary is None:
        return {}
    by_label: dict[str, dict[str, str]] = {}
    for option in vocabulary.options:
        if option.group:
            qualified = f"{option.group}/{option.label}"
            by_label.setdefault(option.label.strip().lower(), {})[option.id] = qualified
    return {label: tuple(sorted(ids.values())) for label, ids in by_label.items() if len(ids) > 1}


def _describe(connector: Any, mapping: MappingFile) -> tuple[list[str], str, frozenset[str] | None]:
    """Field names, where they came from, and the stage field's values when the CRM lists them."""
    obj = mapping.object
    own_fields = getattr(connector, "field_names", None)
    if callable(own_fields):
        own_stages = getattr(connector, "stage_values", None)
        stages = own_stages() if callable(own_stages) else None
        return (
            [str(n) for n in own_fields()],
            f"{type(connector).__name__} field list of {obj}",
            frozenset(str(v) for v in stages) if stages else None,
        )
    sf = getattr(connector, "sf", None)
    if sf is not None and hasattr(sf, "restful"):
        fields = sf.restful(f"sobjects/{obj}/describe").get("fields", [])
        picklist = next(
            (f.get("picklistValues") for f in fields if f.get("name") == mapping.stage_field),
            None,
        )
        stages = (
            frozenset(str(v[k]) for v in picklist for k in ("value", "label") if v.get(k))
            | frozenset(getattr(connector, "emitted_stages", ()))
            if picklist
            else None
        )
        return [str(f["name"]) for f in fields], f"Salesforce describe of {obj}", stages
    crm = getattr(getattr(connector, "client", None), "crm", None)
    if crm is not None and hasattr(crm, "properties"):
        props = crm.properties.core_api.get_all(object_type=obj).results
        names = [str(p.name) for p in props]
        hub_stages: set[str] = set()
        for prop in props:
            if prop.name == mapping.stage_field:
                for option in prop.options or []:
                    hub_stages |= {str(option.value), str(option.label)}
        if obj in ("deals", "tickets") and hasattr(crm, "pipelines"):
            for pipeline in crm.pipelines.pipelines_api.get_all(object_type=obj).results:
                for stage in pipeline.stages:
                    hub_stages |= {stage.id, stage.label, f"{pipeline.label}/{stage.label}"}
        return names, f"HubSpot properties of {obj}", frozenset(hub_stages) or None
    raise CatalogUnavailable(f"{type(connector).__name__} cannot list its fields")
