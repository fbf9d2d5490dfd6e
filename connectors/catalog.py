"""What a CRM says an object holds: its fields and the values its stage field can take.

`mappings validate` checks names against these lists, and a run rewrites stage labels to the
ids the CRM stores (pipeline/stage_vocabulary.py); both ask the connector, through the
credentials, CA and instance a real run uses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageOption:
    id: str
    label: str
    group: str | None = None
    """The pipeline's label, when stages live in pipelines."""
    group_id: str | None = None


@dataclass(frozen=True)
class StageVocabulary:
    """Every value the stage field can hold, as the CRM listed it."""

    field: str
    source: str
    """Where the list came from, for messages, e.g. `HubSpot pipelines of deals`."""
    options: tuple[StageOption, ...]

    def names(self) -> frozenset[str]:
        """Ids, labels and `Pipeline/Label` forms: everything a mapping may write."""
        out: set[str] = set()
        for o in self.options:
            out |= {o.id, o.label}
            if o.group:
                out.add(f"{o.group}/{o.label}")
        return frozenset(out)


@dataclass(frozen=True)
class CrmFields:
    """The object's field names and, when the CRM lists them, its stage values."""

    names: frozenset[str]
    source: str
    """Where the names came from, e.g. `Salesforce describe of Opportunity`."""
    stages: frozenset[str] | None = None
