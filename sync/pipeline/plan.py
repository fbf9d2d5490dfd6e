"""One capture's plan: mapping -> fetch spec -> connector -> CRM stage ids -> pages of rows.

`run`, the daemon, `backfill`, `backfill --dry-run` and `mappings preview` all read the CRM
through this, so what they say about one transition cannot drift apart. (Three copies of this
path once did: with a HubSpot mapping written with a stage label, `run` sent the event while
preview and dry run reported `no_rule`, because only `run` rewrote labels to stage ids.)

The plan does no I/O of its own beyond the connector's reads, and writes nothing: what to do
with each page of rows (commit it, count it, show it) is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from ga4sync.connectors.base import ApiUsage, Connector
from ga4sync.connectors.errors import UnknownCrmField, UnknownCrmObject
from ga4sync.connectors.registry import AnyConnectorSettings, build_connector
from ga4sync.connectors.salesforce_history import KnownKeys, SnapshotLookup
from ga4sync.core.model import TimeWindow, TransitionPage
from ga4sync.mapping.load import LoadedMapping
from ga4sync.pipeline.capture import row_for_rejected, row_for_transition
from ga4sync.pipeline.fetch_problems import mapping_error
from ga4sync.pipeline.fetch_spec import fetch_spec
from ga4sync.pipeline.stage_vocabulary import with_crm_stage_ids
from ga4sync.state.store import OutboxRow


@dataclass(frozen=True)
class StateLookups:
    """What the connector may ask the state store (a capture has them; previews do not)."""

    snapshots: SnapshotLookup | None = None
    known_keys: KnownKeys | None = None


@dataclass(frozen=True)
class PlannedPage:
    """One page the connector read, and the outbox rows a capture would store for it."""

    page: TransitionPage
    at: datetime
    """When the page was mapped: the rows' `now` (GA4's time window is judged against it)."""
    rows: list[OutboxRow]
    """One per `page.transitions`, in the same order."""
    rejected: list[OutboxRow]
    """One per `page.rejected`: stored as invalid, listable and replayable."""


class CapturePlan:
    """One connector instance reading for one mapping; close it (or use `with`)."""

    def __init__(self, mapping: LoadedMapping, connector: Connector) -> None:
        self.source = mapping
        """The mapping as loaded; `mapping()` is the one rows are made with."""
        self.connector = connector
        self._canonical: LoadedMapping | None = None
        self._notes: list[str] = []

    @classmethod
    def open(
        cls,
        settings: AnyConnectorSettings,
        mapping: LoadedMapping,
        *,
        base_dir: Path,
        lookups: StateLookups | None = None,
    ) -> CapturePlan:
        """Connect to the CRM for this mapping (logging in is the connector's part)."""
        lookups = lookups or StateLookups()
        connector = build_connector(
            settings,
            fetch_spec(mapping),
            base_dir=base_dir,
            snapshot_lookup=lookups.snapshots,
            known_keys=lookups.known_keys,
        )
        return cls(mapping, connector)

    def mapping(self) -> LoadedMapping:
        """The mapping with the CRM's stage ids in its rules, asked of the CRM once.

        Raises:
            MappingError: a stage label names stages in several pipelines.
        """
        if self._canonical is None:
            self._canonical, self._notes = with_crm_stage_ids(self.connector, self.source)
        return self._canonical

    def pages(
        self,
        window: TimeWindow,
        *,
        now: Callable[[], datetime],
        scope: str,
        old_events: str,
    ) -> Iterator[PlannedPage]:
        """The window's pages, each mapped at `now()` as it arrives.

        Raises:
            MappingError: the CRM refused a field or object the mapping names (with the
                mapping's file:line), or a stage label is ambiguous.
        """
        mapping = self.mapping()
        try:
            for page in self.connector.fetch_transitions(window):
                at = now()
                rows = [
                    row_for_transition(t, mapping, now=at, scope=scope, old_events=old_events)
                    for t in page.transitions
                ]
                rejected = [row_for_rejected(r, scope=scope, now=at) for r in page.rejected]
                yield PlannedPage(page, at, rows, rejected)
        except (UnknownCrmField, UnknownCrmObject) as exc:
            raise mapping_error(exc, mapping) from None

    @property
    def warnings(self) -> list[str]:
        """Stage names the CRM does not know, then the connector's own warnings."""
        return [*self._notes, *self.connector.warnings]

    @property
    def usage(self) -> ApiUsage:
        return self.connector.usage

    def close(self) -> None:
        self.connector.close()

    def __enter__(self) -> CapturePlan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
