"""Changed record ids from HubSpot search, in modified-time order, past the 10,000-result cap.

Pages are read by keyset, not by offset: each page is a new query `modified GTE <last time of
the page before>` that drops the ids already returned at that time. Offsets would skip a record
whenever one on an earlier page is modified mid-run, and they stop at HubSpot's 10,000-result
cap (`after` >= 10,000 answers 400, crm-apis.md §5.1). A page whose records all share one
timestamp (a bulk job) is finished on its own (`modified EQ ts`, paged by
`hs_object_id GT last id`, split again at the cap), then the window goes on from
`modified GT ts`. Nothing is skipped and every page stays in ascending modified order, so each
page's last time is a safe watermark."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ga4sync.connectors.hubspot_api import SearchPage, parse_hs_time
from ga4sync.core.errors import ConnectorError

SEARCH_CAP = 10_000


class SearchApi(Protocol):
    def search(self, object_type: str, body: dict[str, Any]) -> SearchPage: ...


@dataclass(frozen=True)
class Hit:
    """One search result: a record that changed, and when (None if HubSpot sent no time)."""

    id: str
    modified: datetime | None


def to_ms(value: datetime) -> int:
    value = value.astimezone(UTC)
    return int(value.timestamp()) * 1000 + value.microsecond // 1000


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


class ChangedRecords:
    """Pages of `Hit`s for one object and window, ascending by the modified property."""

    def __init__(
        self,
        api: SearchApi,
        object_type: str,
        modified_property: str,
        *,
        page_size: int = 200,
        cap: int = SEARCH_CAP,
    ) -> None:
        self.api = api
        self.object_type = object_type
        self.prop = modified_property
        self.page_size = page_size
        self.cap = cap
        self.splits = 0
        """How many times a window was split at the cap (reported by tests and the bench)."""

    def pages(self, start: datetime, end: datetime | None = None) -> Iterator[list[Hit]]:
        """Keyset paging: each page is a new query from the last timestamp the page before
        ended on (`GTE ts`, minus the ids already returned at ts), never `after=offset`.

        Offsets shift under a live account: a record on a page already read that is modified
        meanwhile jumps to the end of the order, every later record moves up one place, and
        the one at the page boundary would be skipped for good once the watermark passes it.
        """
        low, low_op = to_ms(start), "GTE"
        end_filter = [self._filter("LT", to_ms(end))] if end is not None else []
        returned_at_low: set[str] = set()
        while True:
            filters = [self._filter(low_op, low), *end_filter]
            hits, next_after = next(self._query(filters, self.prop, first_page_only=True))
            fresh = [h for h in hits if h.id not in returned_at_low or self._ms(h) != low]
            if fresh:
                yield fresh
            stamps = [ms for ms in map(self._ms, hits) if ms is not None]
            if next_after is None or not hits:
                return
            if not stamps:
                raise ConnectorError(
                    f"HubSpot search results carry no {self.prop}; cannot page by it"
                )
            first_ts, last_ts = min(stamps), max(stamps)
            if first_ts == last_ts:
                # A whole page modified in the same millisecond (a bulk job): finish that
                # timestamp by id, then go on strictly after it.
                seen = {h.id for h in hits} | (returned_at_low if last_ts == low else set())
                self.splits += 1
                yield from self._finish_timestamp(last_ts, seen, end_filter)
                low, low_op, returned_at_low = last_ts, "GT", set()
                continue
            at_last = {h.id for h in hits if self._ms(h) == last_ts}
            low, low_op, returned_at_low = last_ts, "GTE", at_last

    @staticmethod
    def _ms(hit: Hit) -> int | None:
        return to_ms(hit.modified) if hit.modified else None

    def _finish_timestamp(
        self, ts: int, seen: set[str], end_filter: list[dict[str, str]]
    ) -> Iterator[list[Hit]]:
        """Every record modified at exactly `ts`, by id, minus those already returned."""
        last_id = 0
        while True:
            filters = [
                self._filter("EQ", ts),
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
                *end_filter,
            ]
            capped = False
            for hits, next_after in self._query(filters, "hs_object_id"):
                for hit in hits:
                    if hit.id.isdigit():
                        last_id = max(last_id, int(hit.id))
                fresh = [h for h in hits if h.id not in seen]
                if fresh:
                    yield fresh
                if next_after is not None and next_after >= self.cap:
                    capped = True
            if not capped:
                return
            self.splits += 1

    def _query(
        self, filters: list[dict[str, str]], sort_by: str, *, first_page_only: bool = False
    ) -> Iterator[tuple[list[Hit], int | None]]:
        """One query's pages while they stay under the cap, with the next offset (or None)."""
        after = 0
        while True:
            body: dict[str, Any] = {
                "filter_groups": [{"filters": filters}],
                "sorts": [{"propertyName": sort_by, "direction": "ASCENDING"}],
                "properties": [self.prop],
                "limit": self.page_size,
            }
            if after:
                body["after"] = str(after)
            page = self.api.search(self.object_type, body)
            hits = [Hit(r.id, parse_hs_time(r.properties.get(self.prop))) for r in page.results]
            next_after = page.next_after
            if next_after is not None and next_after <= after:
                raise RuntimeError(
                    f"HubSpot search paging did not advance (after={after}, next={next_after})"
                )
            yield hits, next_after
            if first_page_only or next_after is None or next_after >= self.cap or not hits:
                return
            after = next_after

    def _filter(self, op: str, ms: int) -> dict[str, str]:
        return {"propertyName": self.prop, "operator": op, "value": str(ms)}
