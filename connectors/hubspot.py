"""HubSpot: stage transitions from property history, through the real `hubspot-api-client`.

Per window (crm-apis.md §5): search the object for records whose last-modified property
(`hs_lastmodifieddate`; `lastmodifieddate` for contacts) is at or after the window start,
ascending, 200 per page, split past the 10,000-result cap (`hubspot_search.py`); then batch read
those ids with `propertiesWithHistory=[stage property]`, which lists every value the property
ever had with its time, so several moves between two polls all come out, in order, with their
true times. Each search page becomes one `TransitionPage` whose watermark is the page's last
*in-order* modified time: everything before it is captured, and the engine re-reads from there
minus the overlap. Searches stop `search_lag` before HubSpot's current time, so a change the
index has not caught up with, or a record edited while the sync pages, cannot pull the window
past records not yet returned (docs/hubspot.md "Search lag and order").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ga4sync.connectors.base import ApiUsage
from ga4sync.connectors.catalog import CrmFields, StageOption, StageVocabulary
from ga4sync.connectors.hubspot_api import ApiPolicy, HsObject, HubspotApi
from ga4sync.connectors.hubspot_auth import (
    BearerToken,
    FixedToken,
    OAuthClient,
    RefreshingToken,
)
from ga4sync.connectors.hubspot_search import ChangedPage, ChangedRecords, to_ms
from ga4sync.connectors.hubspot_settings import HubspotSettings
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow, TransitionPage

log = logging.getLogger(__name__)

MODIFIED_PROPERTY = {"contacts": "lastmodifieddate"}
"""Contacts searched on `hs_lastmodifieddate` silently return wrong results (§5.3)."""
PIPELINE_STAGE_PROPERTY = {"deals": "dealstage", "tickets": "hs_pipeline_stage"}


class HubspotConnector:
    """Reads one object's stage history; never touches state, mappings or GA4."""

    detection: Literal["history", "snapshot", "file"] = "history"

    def __init__(
        self,
        settings: HubspotSettings,
        *,
        spec: FetchSpec,
        secret_base_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        object_type = self.object_type = spec.object_type
        self.stage_field = spec.stage_field
        self.warnings: list[str] = []
        self.modified_property = settings.modified_property or MODIFIED_PROPERTY.get(
            object_type, "hs_lastmodifieddate"
        )
        self.record_fields = list(dict.fromkeys(["hs_object_id", *spec.record_fields]))
        token = bearer_token(settings, secret_base_dir)
        policy = ApiPolicy(
            search_rate=settings.search_rate,
            max_attempts=settings.max_attempts,
            search_backoff=settings.search_backoff.total_seconds(),
            burst_backoff=settings.burst_backoff.total_seconds(),
            timeout=settings.timeout.total_seconds(),
        )
        self.api = HubspotApi(
            token=token,
            host=settings.host,
            policy=policy,
            ca_file=settings.ca_file,
            sleep=sleep,
        )
        self.token = token
        self.usage: ApiUsage = self.api.usage
        self.search = ChangedRecords(
            self.api,
            object_type,
            self.modified_property,
            page_size=settings.page_size,
            cap=settings.search_cap,
        )

    def close(self) -> None:
        self.api.close()
        if isinstance(self.token, RefreshingToken):
            self.token.close()

    # -- what the stage field can hold ---------------------------------------------------------
    def stage_vocabulary(self) -> StageVocabulary | None:
        """Pipeline stages (deals, tickets) or the property's options (lifecyclestage, ...)."""
        if PIPELINE_STAGE_PROPERTY.get(self.object_type) == self.stage_field:
            options = tuple(
                StageOption(str(s["id"]), str(s["label"]), str(p["label"]), str(p["id"]))
                for p in self.api.pipelines(self.object_type)
                for s in p.get("stages") or []
            )
            return StageVocabulary(
                self.stage_field, f"HubSpot pipelines of {self.object_type}", options
            )
        prop = self.api.property_definition(self.object_type, self.stage_field)
        if prop is None or not prop.get("options"):
            return None
        return StageVocabulary(
            self.stage_field,
            f"HubSpot property {self.object_type}.{self.stage_field}",
            tuple(StageOption(str(o["value"]), str(o["label"])) for o in prop["options"]),
        )

    def setup_warnings(self) -> list[str]:
        """HubSpot keeps every property's history; nothing to switch on."""
        return []

    def field_catalog(self) -> CrmFields:
        """The object's properties, and every id, label and `Pipeline/Label` of its stages."""
        names = frozenset(str(p["name"]) for p in self.api.properties(self.object_type))
        vocabulary = self.stage_vocabulary()
        return CrmFields(
            names,
            f"HubSpot properties of {self.object_type}",
            (vocabulary.names() or None) if vocabulary else None,
        )

    # -- change detection ----------------------------------------------------------------------
    def fetch_transitions(self, window: TimeWindow) -> Iterator[TransitionPage]:
        # The search is bounded by HubSpot's clock, not by the window's end: a record moved
        # inside a closed window (backfill) may have been modified again since; its history
        # entries are cut to the window instead.
        until = self.api.server_now(self.object_type) - self.settings.search_lag
        for page in self.search.pages(window.start, until):
            if page.out_of_order:
                log.info(
                    "HubSpot search returned %d %s record(s) ahead of their place (edited "
                    "during the search): read now, not trusted for the watermark",
                    page.out_of_order,
                    self.object_type,
                    extra={"connector": self.name},
                )
            yield self._page(page, window)

    def _page(self, page: ChangedPage, window: TimeWindow) -> TransitionPage:
        rejected: list[RejectedRecord] = []
        ids: list[str] = []
        for hit in page.hits:
            if not hit.id:
                rejected.append(self._reject("?", "search result has no id", {}))
            elif hit.modified is None:
                rejected.append(
                    self._reject(hit.id, f"search result has no {self.modified_property}", {})
                )
            elif hit.id not in ids:
                ids.append(hit.id)
        watermark = page.watermark
        records: dict[str, HsObject] = {}
        size = self.settings.batch_size
        for i in range(0, len(ids), size):
            for record in self.api.batch_read(
                self.object_type, ids[i : i + size], self.record_fields, [self.stage_field]
            ):
                records[record.id] = record
        transitions: list[StageTransition] = []
        for rid in ids:
            found = records.get(rid)
            if found is None:
                continue  # archived (deleted) between search and read: nothing to send
            moves, problem = self._moves(found, window)
            transitions += moves
            if problem:
                rejected.append(problem)
        return TransitionPage(transitions=transitions, watermark=watermark, rejected=rejected)

    def _moves(
        self, record: HsObject, window: TimeWindow
    ) -> tuple[list[StageTransition], RejectedRecord | None]:
        """The record's stage moves inside the window, oldest first, each from the one before."""
        rid = record.id
        fields = dict(record.properties)
        entries: list[tuple[datetime, str | None]] = []
        for entry in reversed(record.history.get(self.stage_field) or []):  # newest first
            at = entry.timestamp
            if at is None:
                return [], self._reject(
                    rid, f"a {self.stage_field} history entry has no valid timestamp", fields
                )
            entries.append((at, entry.value if entry.value not in ("", None) else None))
        entries.sort(key=lambda e: e[0])  # stable: same-time entries keep HubSpot's order
        start_ms = to_ms(window.start)
        end_ms = to_ms(window.end) if window.end else None
        out: list[StageTransition] = []
        previous: str | None = None
        for at, value in entries:
            if value == previous:
                continue
            ms = to_ms(at)
            if value is not None and ms >= start_ms and (end_ms is None or ms < end_ms):
                out.append(
                    StageTransition(
                        connector=self.name,
                        object_type=self.object_type,
                        record_id=rid,
                        field=self.stage_field,
                        from_value=previous,
                        to_value=value,
                        changed_at=at.astimezone(UTC),
                        detected_by="history",
                        fields=fields,
                        source_ref=f"{self.object_type}/{rid}/{self.stage_field}@{ms}",
                    )
                )
            previous = value
        return out, None

    def _reject(self, rid: str, reason: str, raw: dict[str, Any]) -> RejectedRecord:
        return RejectedRecord(
            connector=self.name,
            object_type=self.object_type,
            record_ref=f"{self.object_type}/{rid}",
            reason=reason,
            raw=raw,
        )


def bearer_token(settings: HubspotSettings, base_dir: Path | None) -> BearerToken:
    """The configured credential, resolved: a fixed token, or OAuth renewed by refresh."""
    if settings.oauth is None:
        assert settings.access_token is not None  # HubspotSettings checks exactly one is set
        return FixedToken(settings.access_token.resolve(base_dir).get_secret_value())
    oauth = settings.oauth
    client = OAuthClient(
        client_id=oauth.client_id.resolve(base_dir).get_secret_value(),
        client_secret=oauth.client_secret.resolve(base_dir).get_secret_value(),
        refresh_token=oauth.refresh_token.resolve(base_dir).get_secret_value(),
        token_url=oauth.token_url or f"{settings.host}/oauth/v1/token",
    )
    return RefreshingToken(
        client, ca_file=settings.ca_file, timeout=settings.timeout.total_seconds()
    )
