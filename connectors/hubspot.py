"""HubSpot: stage transitions from property history, through the real `hubspot-api-client`.

Per window (crm-apis.md §5): search the object for records whose last-modified property
(`hs_lastmodifieddate`; `lastmodifieddate` for contacts) is at or after the window start,
ascending, 200 per page, split past the 10,000-result cap (`hubspot_search.py`); then batch read
those ids with `propertiesWithHistory=[stage property]`, which lists every value the property
ever had with its time, so several moves between two polls all come out, in order, with their
true times. Each search page becomes one `TransitionPage` whose watermark is the page's last
modified time: everything before it is captured, and the engine re-reads from there minus the
overlap, which also absorbs search-index lag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ga4sync.connectors.base import ApiUsage, ConnectorSettings
from ga4sync.connectors.hubspot_api import ApiPolicy, HsObject, HubspotApi
from ga4sync.connectors.hubspot_search import SEARCH_CAP, ChangedRecords, Hit, to_ms
from ga4sync.core.durations import Duration
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow, TransitionPage
from ga4sync.core.secrets import SecretRef
from ga4sync.core.urls import check_base_url
from ga4sync.pipeline.stage_vocabulary import StageOption, StageVocabulary
from pydantic import Field, field_validator

log = logging.getLogger(__name__)

MODIFIED_PROPERTY = {"contacts": "lastmodifieddate"}
"""Contacts searched on `hs_lastmodifieddate` silently return wrong results (§5.3)."""
PIPELINE_STAGE_PROPERTY = {"deals": "dealstage", "tickets": "hs_pipeline_stage"}


class HubspotSettings(ConnectorSettings):
    """A HubSpot account; which object and property to watch comes from the mapping file."""

    type: Literal["hubspot"] = "hubspot"
    access_token: SecretRef = Field(
        description="Private app access token (or an OAuth access token): `env: NAME` or "
        "`file: path`. Scopes: crm.objects.deals.read, crm.objects.contacts.read, and "
        "crm.schemas.deals.read / crm.schemas.contacts.read for pipelines and properties."
    )
    host: str = Field(
        default="https://api.hubapi.com",
        description="API base URL; only changed for the local sandbox or a proxy.",
    )
    ca_file: str | None = Field(default=None, description="Extra CA to trust (sandbox only).")
    modified_property: str | None = Field(
        default=None,
        description="Property the search filters on; default hs_lastmodifieddate "
        "(lastmodifieddate for contacts).",
    )
    page_size: int = Field(default=200, ge=1, le=200, description="Search page size (max 200).")
    batch_size: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Ids per batch read. HubSpot caps history-bearing reads at 50 per page "
        "(the SDK's own limit); batch read without history takes 100.",
    )
    search_rate: float = Field(
        default=4.0,
        gt=0,
        description="Search requests per second ga4sync allows itself; HubSpot allows 5/s per "
        "account, shared by every app.",
    )
    search_cap: int = Field(
        default=SEARCH_CAP,
        ge=1,
        le=SEARCH_CAP,
        description="Results one search query can page through (HubSpot: 10,000); windows "
        "with more are split. Lower it only to test the split.",
    )
    max_attempts: int = Field(default=8, ge=1, le=50, description="Tries per call on 429/5xx.")
    search_backoff: Duration = Field(
        default=timedelta(seconds=1), description="Wait after a search 429 (SECONDLY)."
    )
    burst_backoff: Duration = Field(
        default=timedelta(seconds=10),
        description="Wait after a TEN_SECONDLY_ROLLING 429 when HubSpot names no interval.",
    )
    timeout: Duration = Field(default=timedelta(seconds=30), description="Per-request timeout.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        # At 0s every call fails locally before HubSpot sees it.
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s; the default is 30s")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("host must be a URL such as https://api.hubapi.com")
        return check_base_url(value).rstrip("/")


class HubspotConnector:
    """Reads one object's stage history; never touches state, mappings or GA4."""

    detection: Literal["history", "snapshot", "file"] = "history"

    def __init__(
        self,
        settings: HubspotSettings,
        *,
        object_type: str,
        stage_field: str,
        record_fields: list[str],
        secret_base_dir: Path | None = None,
        sleep: Any = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.object_type = object_type
        self.stage_field = stage_field
        self.modified_property = settings.modified_property or MODIFIED_PROPERTY.get(
            object_type, "hs_lastmodifieddate"
        )
        self.record_fields = list(dict.fromkeys(["hs_object_id", *record_fields]))
        token = settings.access_token.resolve(secret_base_dir).get_secret_value()
        policy = ApiPolicy(
            search_rate=settings.search_rate,
            max_attempts=settings.max_attempts,
            search_backoff=settings.search_backoff.total_seconds(),
            burst_backoff=settings.burst_backoff.total_seconds(),
            timeout=settings.timeout.total_seconds(),
        )
        extra = {"sleep": sleep} if sleep is not None else {}
        self.api = HubspotApi(
            access_token=token, host=settings.host, policy=policy, ca_file=settings.ca_file, **extra
        )
        self.usage: ApiUsage = self.api.usage
        self.search = ChangedRecords(
            self.api,
            object_type,
            self.modified_property,
            page_size=settings.page_size,
            cap=settings.search_cap,
        )

    @property
    def client(self) -> Any:
        """The SDK client, for tools that ask HubSpot directly (mapping field suggestions)."""
        return self.api.client

    def close(self) -> None:
        self.api.close()

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

    def field_names(self) -> list[str]:
        return [str(p["name"]) for p in self.api.properties(self.object_type)]

    def stage_values(self) -> list[str] | None:
        vocabulary = self.stage_vocabulary()
        return sorted(vocabulary.names()) if vocabulary else None

    # -- change detection ----------------------------------------------------------------------
    def fetch_transitions(self, window: TimeWindow) -> Iterator[TransitionPage]:
        # No upper bound on the search: a record moved inside a closed window (backfill) may
        # have been modified again since; its history entries are cut to the window instead.
        for hits in self.search.pages(window.start):
            yield self._page(hits, window)

    def _page(self, hits: list[Hit], window: TimeWindow) -> TransitionPage:
        rejected: list[RejectedRecord] = []
        ids: list[str] = []
        for hit in hits:
            if not hit.id:
                rejected.append(self._reject("?", "search result has no id", {}))
            elif hit.modified is None:
                rejected.append(
                    self._reject(hit.id, f"search result has no {self.modified_property}", {})
                )
            elif hit.id not in ids:
                ids.append(hit.id)
        watermark = max((h.modified for h in hits if h.modified), default=None)
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
