"""Changed record ids from HubSpot search, in modified-time order, past the 10,000-result cap.

Pages are read by keyset, not by offset: each page is a new query `modified GTE <last time of
the page before>` that drops the ids already returned at that time. Offsets would skip a record
whenever one on an earlier page is modified mid-run, and they stop at HubSpot's 10,000-result
cap (`after` >= 10,000 answers 400, crm-apis.md §5.1). A page whose records all share one
timestamp (a bulk job) is finished on its own (`modified EQ ts`, paged by
`hs_object_id GT last id`, split again at the cap), then the window goes on from
`modified GT ts`.

The index does not always keep that order. A record edited while a sync pages through a search
can come back at its *old* place carrying its *new*, much later, last-modified time
(estuary/connectors#2210 saw it in production), and a change reaches the index only some time
after its timestamp. Both are handled the same way: every search is bounded above by
`modified LT until` (HubSpot's own clock minus `search_lag`, fixed for the whole pass), and the
next search and the page's watermark come only from hits that are *in order* (inside the bound
and not later than any hit after them on the page). A hit that jumps ahead is still read (its
history is captured now), but it never moves the window: it is found again, in its new place,
by a later poll, and transition keys make that a duplicate, not a second event. After the
bounded part, the records modified since `until` are read too (pages without a watermark), so a
record that left the bounded range mid-pass is never missed, and recent moves go out at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ga4sync.connectors.hubspot_api import SearchPage, parse_hs_time
from ga4sync.connectors.hubspot_settings import SEARCH_CAP
from ga4sync.core.errors import ConnectorError


class SearchApi(Protocol):
    def search(self, object_type: str, body: dict[str, Any]) -> SearchPage: ...


@dataclass(frozen=True)
class Hit:
    """One search result: a record that changed, and when (None if HubSpot sent no time)."""

    id: str
    modified: datetime | None


@dataclass(frozen=True)
class ChangedPage:
    """One search page and the time up to which everything is known to have been returned."""

    hits: list[Hit]
    watermark: datetime | None
    """The last in-order time on the page; None when no hit on it is in order."""
    out_of_order: int = 0
    """Hits whose time is ahead of their place (edited mid-search); read, not trusted."""


def in_order_stamps(stamps: list[int | None], until: int) -> list[int]:
    """The times on a page the window may advance to: inside the bound, and not later than any
    time after them on the page (a later time before an earlier one is a record the index still
    holds at an older place)."""
    kept: list[int] = []
    floor = until
    for ms in reversed(stamps):
        if ms is None:
            continue
        if ms < floor:
            kept.append(ms)
            floor = ms + 1  # equal times are in order
    return sorted(kept)


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
        self.stopped_early = 0
        """Passes ended on a page with no in-order hit (left to the next poll)."""

    def pages(self, start: datetime, until: datetime) -> Iterator[ChangedPage]:
        """Every record modified since `start`: first the settled part `[start, until)`, whose
        pages carry watermarks, then the unsettled tail from `until` on, whose pages do not.

        The tail is why the bound loses nothing: a record edited mid-pass, and re-indexed
        before the keyset reached its old place, is no longer anywhere in `[start, until)`;
        read in the tail, its earlier moves inside the window are captured with this window.
        It also captures recent moves at once; the next poll re-reads them as duplicates.
        """
        read: dict[str, int | None] = {}
        for page in self._keyset(to_ms(start), to_ms(until)):
            read.update((h.id, self._ms(h)) for h in page.hits)
            yield page
        for page in self._keyset(to_ms(until), None):
            hits = [h for h in page.hits if read.get(h.id, -1) != self._ms(h)]
            if hits:
                yield ChangedPage(hits, None, page.out_of_order)

    def _keyset(self, start_ms: int, bound: int | None) -> Iterator[ChangedPage]:
        """Keyset paging: each page is a new query from the last in-order timestamp the page
        before ended on (`GTE ts`, minus the ids already returned at ts), never `after=offset`,
        and never past `bound` (`LT bound`; None: no bound).

        Offsets shift under a live account: a record on a page already read that is modified
        meanwhile jumps to the end of the order, every later record moves up one place, and
        the one at the page boundary would be skipped for good once the watermark passes it.
        """
        low, low_op = start_ms, "GTE"
        end_filter = [self._filter("LT", bound)] if bound is not None else []
        returned_at_low: set[str] = set()
        while True:
            filters = [self._filter(low_op, low), *end_filter]
            hits, next_after = next(self._query(filters, self.prop, first_page_only=True))
            fresh = [h for h in hits if h.id not in returned_at_low or self._ms(h) != low]
            stamps = [self._ms(h) for h in hits]
            if hits and all(ms is None for ms in stamps):
                raise ConnectorError(
                    f"HubSpot search results carry no {self.prop}; cannot page by it"
                )
            ordered = in_order_stamps(stamps, bound if bound is not None else 2**62)
            ahead = sum(1 for ms in stamps if ms is not None) - len(ordered)
            mark = from_ms(ordered[-1]) if ordered else None
            if fresh:
                yield ChangedPage(fresh, mark, ahead)
            if next_after is None or not hits:
                return
            if not ordered:
                # Every hit is ahead of its place: there is no time the window may move to.
                # Stop here; the next poll starts from the last watermark and finds these
                # records in their new places once the index has caught up.
                self.stopped_early += 1
                return
            first_ts, last_ts = ordered[0], ordered[-1]
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
    ) -> Iterator[ChangedPage]:
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
                ahead = sum(1 for h in fresh if self._ms(h) != ts)
                if fresh:
                    # Hits of another time are records edited since the index placed them here.
                    yield ChangedPage(fresh, from_ms(ts), ahead)
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
