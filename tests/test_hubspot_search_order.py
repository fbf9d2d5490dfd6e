"""HubSpot search out of order and lagging: every move captured once, whatever the index does.

The sandbox's index behaves like HubSpot's: a change reaches search only `search_lag` after its
timestamp, and until then the record is filtered and sorted at its *old* place while answering
with its *new* properties (estuary/connectors#2210). Tests drive the real `hubspot-api-client`
through the engine on both state backends.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

import pytest
from ga4sync.connectors.hubspot_search import in_order_stamps
from ga4sync.sandbox.http import Request, Response
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_hubspot import ROOMY, deal_rows, deals_engine


@pytest.fixture
def hub(sandbox: SandboxEnvironment) -> SandboxEnvironment:
    sandbox.hubspot.limits = ROOMY
    sandbox.hubspot.data.search_lag = timedelta(seconds=30)
    return sandbox


def moves(engine: Any) -> list[tuple[str, str]]:
    return sorted((r.record_id, r.to_value) for r in deal_rows(engine))


def test_one_deal_edited_while_the_first_page_is_read_does_not_skip_400(
    hub: SandboxEnvironment, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's replay: 600 deals, one edited as the sync starts paging. The index returns it
    at its old place on page 1 carrying a last-modified time of *now*; paging from the newest
    time on the page jumped past the other 400, and the next poll (watermark - overlap) did not
    reach back to them."""
    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [
        data.create(
            "deals",
            now - timedelta(hours=5) + timedelta(seconds=20 * i),
            {"dealstage": "qualifiedtobuy"},
        )
        for i in range(600)
    ]
    edited = ids[99]
    searches: list[str] = []

    def a_seller_edits_a_deal_as_the_search_starts(req: Request) -> Response | None:
        if req.path.endswith("/search"):
            searches.append(req.path)
            if len(searches) == 1:
                data.move("deals", edited, "closedwon", hub.clock.now())
        return None

    hub.hubspot.app.before.insert(0, a_seller_edits_a_deal_as_the_search_starts)
    engine = deals_engine(make_engine)
    with caplog.at_level(logging.INFO, logger="ga4sync.connectors.hubspot"):
        first = engine.run_once().captures[0]
    assert first.status == "ok", first.error
    assert "returned 1 deals record(s) ahead of their place" in caplog.text
    assert {r for r, stage in moves(engine) if stage == "qualifiedtobuy"} == set(ids)
    mark = engine.store.get_watermark("hubspot_deals", "deals")
    assert mark is not None and mark < now  # never pulled to the edit's time

    hub.clock.advance(timedelta(minutes=10))
    second = engine.run_once().captures[0]
    assert second.status == "ok", second.error
    assert moves(engine) == sorted([(r, "qualifiedtobuy") for r in ids] + [(edited, "closedwon")])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edits_during_paging_in_any_order_lose_nothing_and_send_nothing_twice(
    hub: SandboxEnvironment, make_engine: EngineFactory, seed: int
) -> None:
    """Sellers keep editing deals (some not yet read, some already read) while a sync pages
    through small pages; whatever places the index returns them at, each move is captured
    once over the following polls."""
    rng = random.Random(seed)
    data = hub.hubspot.data
    now = hub.clock.now()
    ids = [
        data.create(
            "deals",
            now - timedelta(hours=2) + timedelta(seconds=7 * i),
            {"dealstage": "appointmentscheduled"},
        )
        for i in range(300)
    ]
    expected = {(r, "appointmentscheduled") for r in ids}
    stages = ["qualifiedtobuy", "contractsent", "closedwon"]

    def edits_between_pages(req: Request, resp: Response) -> None:
        if req.path.endswith("/search") and rng.random() < 0.6:
            for rid in rng.sample(ids, 3):
                stage = rng.choice(stages)
                record = data.get("deals", rid)
                assert record is not None
                if record.properties["dealstage"] != stage:
                    data.move(
                        "deals",
                        rid,
                        stage,
                        hub.clock.now(),
                        index_delay=timedelta(seconds=rng.choice([0, 20, 90])),
                    )
                    expected.add((rid, stage))
            hub.clock.advance(timedelta(milliseconds=rng.randint(1, 900)))

    hub.hubspot.app.after.append(edits_between_pages)
    engine = deals_engine(make_engine, page_size=20, batch_size=20)
    for _ in range(3):
        assert engine.run_once().captures[0].status == "ok"
        hub.clock.advance(timedelta(minutes=6))
    hub.hubspot.app.after.remove(edits_between_pages)
    assert engine.run_once().captures[0].status == "ok"
    # A deal moved back to a stage it had before is a second move to that stage: compare
    # against the sandbox's own history, entry for entry.
    history = sorted((rid, entry.value) for rid in ids for entry in _stage_moves(data, rid))
    got = moves(engine)
    assert got == history
    assert len(set(got)) <= len(got) and {m for m in got} >= expected


def _stage_moves(data: Any, rid: str) -> list[Any]:
    record = data.get("deals", rid)
    out, previous = [], None
    for entry in record.history["dealstage"]:
        if entry.value != previous:
            out.append(entry)
        previous = entry.value
    return out


@pytest.mark.parametrize(
    ("index_lag", "overlap", "first_poll_with_it"),
    [
        (timedelta(0), "10m", 1),
        (timedelta(minutes=3), "10m", 1),  # inside the 5-minute search lag: read on time
        (timedelta(minutes=8), "10m", 2),  # beyond it: the next poll's overlap finds it
        (timedelta(minutes=13), "10m", 3),
        (timedelta(minutes=20), "30m", 5),  # past lag + overlap, only a longer overlap helps
    ],
)
def test_search_index_lag_is_measured_against_the_search_lag_and_overlap(
    hub: SandboxEnvironment,
    make_engine: EngineFactory,
    index_lag: timedelta,
    overlap: str,
    first_poll_with_it: int,
) -> None:
    """A deal whose move reaches the index late, among deals that keep moving on time: with
    search_lag 5m and a poll every 5 minutes it is captured once, on the poll the table says,
    for any index lag up to search_lag + overlap (docs/hubspot.md "Search lag and order")."""
    data = hub.hubspot.data
    start = hub.clock.now()
    # Last modified a day ago: its old place in the index is outside every later window, so
    # only its new place (once indexed) can bring it back.
    late = data.create("deals", start - timedelta(days=1), {"dealstage": "qualifiedtobuy"})
    others = [
        data.create("deals", start - timedelta(hours=1), {"dealstage": "qualifiedtobuy"})
        for _ in range(20)
    ]
    engine = deals_engine(make_engine, overlap=overlap)
    engine.run_once()
    data.move("deals", late, "closedwon", start + timedelta(seconds=10), index_delay=index_lag)
    seen_on: list[int] = []
    for poll in range(1, 6):
        # Other deals move on time every minute, pushing the watermark forward.
        for minute in range(5):
            at = start + timedelta(minutes=5 * (poll - 1) + minute, seconds=20)
            data.move("deals", others[(poll * 5 + minute) % 20], f"stage{poll}{minute}", at)
        hub.clock.advance(timedelta(minutes=5))
        assert engine.run_once().captures[0].status == "ok"
        if (late, "closedwon") in moves(engine) and not seen_on:
            seen_on.append(poll)
    assert seen_on == [first_poll_with_it]
    assert moves(engine).count((late, "closedwon")) == 1


def test_in_order_stamps_keep_only_times_the_window_may_move_to() -> None:
    # 900 is a record edited mid-search, still at its old place; 5000 is past the bound.
    assert in_order_stamps([100, 200, 900, 300, 300, None, 400], until=1000) == [
        100,
        200,
        300,
        300,
        400,
    ]
    assert in_order_stamps([100, 5000], until=1000) == [100]
    assert in_order_stamps([5000], until=1000) == []
