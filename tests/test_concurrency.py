"""The adaptive concurrency limit: its rules on their own (tables of observations, no clock,
no threads), then through the real Delivery, `requests` and the GA4 stand-in in its
load-dependent mode (slower with more in flight, 429 past its capacity).

No test asserts timings: the end-to-end one asserts where the limit went and that every event
reached GA4 exactly once, however the threads happened to interleave.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, timedelta

import pytest
from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Status
from ga4sync.ops.metrics import DaemonMetrics
from ga4sync.pipeline.concurrency import (
    MAX_PAUSE_S,
    NO_HINT_PAUSE_S,
    ConcurrencyLimit,
    Signal,
    classify,
)
from ga4sync.pipeline.delivery import Delivery, DeliveryReport, DeliverySettings
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.sandbox.ga4 import Faults
from ga4sync.state.store import StateStore

from tests.test_delivery import (
    Ga4Server,
    capture,
    clock,
    ga4_server,
    make_client,
    row,
    statuses,
)

__all__ = ["clock", "ga4_server"]  # fixtures used below

FAST = 0.050
"""A quick answer: the latency an idle path gives."""


def window(limit: ConcurrencyLimit, latency_s: float = FAST, now: float = 0.0) -> int:
    """One round trip at the current level: `limit` requests go at once, all answered 2xx."""
    tickets = [limit.admit() for _ in range(limit.limit)]
    for t in tickets:
        limit.observe(t, "ok", latency_s, now)
    return limit.limit


def burst(limit: ConcurrencyLimit, signal: Signal, n: int, retry_after: float | None = None) -> int:
    """`n` requests go at once and all are refused the same way."""
    tickets = [limit.admit() for _ in range(n)]
    for t in tickets:
        limit.observe(t, signal, 0.002, 100.0, retry_after)
    return limit.limit


# -- the rules ------------------------------------------------------------------------------


def test_a_burst_of_429s_from_one_window_halves_the_limit_once() -> None:
    limit = ConcurrencyLimit(initial=32, maximum=64)
    assert burst(limit, "throttled", 32) == 16  # not 32 -> 16 -> 8 -> ... -> 1
    assert limit.throttled == 32
    # A refusal of a request sent at the new level is news: it cuts again.
    assert burst(limit, "throttled", 16) == 8


def test_refusals_of_requests_sent_before_a_cut_do_not_cut_again() -> None:
    limit = ConcurrencyLimit(initial=20, maximum=20)
    old = [limit.admit() for _ in range(20)]
    limit.observe(old[0], "throttled", 0.002, 0.0)
    assert limit.limit == 10
    new = limit.admit()
    for t in old[1:]:
        limit.observe(t, "server_error", 0.002, 0.0)
    assert limit.limit == 10
    limit.observe(new, "transport", 0.002, 0.0)
    assert limit.limit == 5


@pytest.mark.parametrize("signal", ["server_error", "transport"])
def test_5xx_and_transport_failures_back_off(signal: Signal) -> None:
    limit = ConcurrencyLimit(initial=12, maximum=24)
    assert burst(limit, signal, 3) == 6
    assert limit.last_change is not None and limit.last_change.old == 12


def test_clearly_rising_latency_backs_off_and_noise_does_not() -> None:
    limit = ConcurrencyLimit(initial=10, maximum=10)
    for _ in range(5):
        assert window(limit, FAST) == 10
    for jitter in (0.052, 0.048, 0.055, 0.050):  # a few ms either way: noise
        assert window(limit, jitter) == 10
    window(limit, 0.200)  # four times the baseline: requests queue somewhere
    assert limit.limit == 8
    assert limit.last_change is not None and "latency" in limit.last_change.reason


def test_a_single_slow_answer_in_a_window_is_not_a_trend() -> None:
    limit = ConcurrencyLimit(initial=8, maximum=8)
    window(limit, FAST)
    tickets = [limit.admit() for _ in range(8)]
    for i, t in enumerate(tickets):
        limit.observe(t, "ok", 2.0 if i == 0 else FAST, 0.0)  # the median ignores it
    assert limit.limit == 8


def test_grows_by_one_per_window_while_latency_holds_up_to_max() -> None:
    limit = ConcurrencyLimit(initial=4, maximum=9)
    seen = [window(limit) for _ in range(8)]
    assert seen == [5, 6, 7, 8, 9, 9, 9, 9]
    assert limit.highest == 9


def climb_after_cut(w_max: int, windows: int) -> tuple[int, list[int]]:
    """A limit at `w_max` is refused once (a burst), then `windows` clean round trips follow:
    the level the cut left, and the limit after each window."""
    limit = ConcurrencyLimit(initial=w_max, maximum=4 * w_max)
    cut = burst(limit, "throttled", w_max)
    seen = []
    for _ in range(windows):
        window(limit)
        while len(limit._window_latencies):  # a limit under MIN_WINDOW: finish its window
            window(limit)
        seen.append(limit.limit)
    return cut, seen


@pytest.mark.parametrize(
    "w_max,cut,near,below_for,past_by",
    [
        # w_max: the level GA4 refused; near: windows until the limit is back at w_max - 1;
        # below_for: windows it stays below w_max; past_by: windows until it grows past it.
        (16, 8, 25, 36, 40),
        (8, 4, 19, 30, 35),
        (32, 16, 32, 43, 47),
        (64, 32, 40, 52, 56),
        (4, 2, 13, 25, 29),
    ],
)
def test_after_a_cut_the_limit_climbs_back_to_just_below_where_it_failed_then_probes(
    w_max: int, cut: int, near: int, below_for: int, past_by: int
) -> None:
    """CUBIC's shape, in windows: fast back towards the level that failed, a long stay just
    below it, and growth past it only after a sustained clean run there."""
    level, seen = climb_after_cut(w_max, 120)
    assert level == cut
    assert seen == sorted(seen)  # clean windows never lower it
    assert seen.index(w_max - 1) + 1 == near
    assert max(seen[:below_for]) == w_max - 1 and seen[below_for] == w_max
    assert max(seen[: past_by - 1]) == w_max and seen[past_by - 1] == w_max + 1
    # Half-way back, most of the way back: the climb is fast first (concave) ...
    assert seen[near // 2] - cut >= (w_max - 1 - cut) * 2 // 3
    # ... and once well past w_max without trouble, it speeds up again (convex).
    # ... and once past w_max without trouble, it speeds up again (convex): from there to twice
    # w_max takes fewer windows than the way back from the cut to w_max did.
    twice = next(i + 1 for i, level in enumerate(seen) if level >= 2 * w_max)
    assert twice - past_by < below_for
    assert seen[-1] == 4 * w_max  # and up to the maximum


def test_the_climb_after_a_cut_from_16_stays_at_or_below_15_then_16() -> None:
    """The brief's case: after 16 -> 8 the limit is back near 15 soon, and not above 16 for
    a long clean run; past 16 only after that."""
    cut, seen = climb_after_cut(16, 60)
    assert cut == 8
    assert seen[:12] == [8, 9, 10, 10, 11, 12, 12, 12, 13, 13, 13, 14]  # +1 per window or so
    assert max(seen[:36]) == 15  # 36 windows: 25 to reach 15, and 11 more there
    assert max(seen[:39]) == 16
    assert seen[39:45] == [17, 17, 17, 18, 18, 19]
    assert seen[59] > 30


def test_each_cut_restarts_the_climb_from_the_level_that_failed() -> None:
    cut, seen = climb_after_cut(16, 45)
    assert seen[-1] == 19
    limit = ConcurrencyLimit(initial=16, maximum=64)
    burst(limit, "throttled", 16)
    for _ in range(40):
        window(limit)
    assert limit.limit == 17
    assert burst(limit, "throttled", 17) == 8  # 17 failed: the plateau is now 16
    climbed = [window(limit) for _ in range(40)]
    assert max(climbed[:36]) == 16 and 17 in climbed


def test_a_latency_cut_also_starts_a_climb_below_the_level_that_queued() -> None:
    limit = ConcurrencyLimit(initial=20, maximum=40)
    window(limit)
    window(limit, 0.200)  # requests queue at 21
    assert limit.limit == 16
    climbed = [window(limit) for _ in range(30)]
    assert max(climbed) == 20  # back to just below 21, not above it yet
    assert climbed[-1] == 20


def test_windows_that_could_not_grow_do_not_advance_the_climb() -> None:
    """Unused or slow windows are not a clean run: they neither raise the limit nor bring the
    probe past the old level any closer."""
    limit = ConcurrencyLimit(initial=16, maximum=64)
    burst(limit, "throttled", 16)
    for _ in range(30):
        window(limit)
    assert limit.limit == 15
    for _ in range(50):  # one request at a time: the limit is not what holds sending back
        limit.observe(limit.admit(), "ok", FAST, 0.0)
    assert limit.limit == 15
    seen = [window(limit) for _ in range(10)]
    assert seen[-1] == 17 and seen[:6] == [15] * 6


def test_does_not_grow_on_a_limit_it_does_not_use() -> None:
    limit = ConcurrencyLimit(initial=10, maximum=20)
    for _ in range(6):  # one request at a time: the limit is not what holds sending back
        limit.observe(limit.admit(), "ok", FAST, 0.0)
    assert limit.limit == 10


def test_bounds_min_and_never_below_one() -> None:
    limit = ConcurrencyLimit(initial=8, minimum=3, maximum=8)
    for _ in range(5):
        burst(limit, "throttled", 8)
    assert limit.limit == limit.lowest == 3
    lone = ConcurrencyLimit(initial=1, minimum=0, maximum=4)
    for _ in range(3):
        assert burst(lone, "throttled", 1) == 1
    with pytest.raises(ValueError, match="min"):
        ConcurrencyLimit(initial=10, minimum=2, maximum=5)


def test_fixed_limit_never_moves() -> None:
    limit = ConcurrencyLimit(initial=6, minimum=6, maximum=6)
    assert limit.fixed
    burst(limit, "throttled", 6)
    window(limit)
    window(limit, 1.0)
    assert limit.limit == 6


def test_retry_after_pauses_new_sends_for_that_long() -> None:
    limit = ConcurrencyLimit(initial=4, maximum=4)
    t = limit.admit()
    limit.observe(t, "throttled", 0.002, now=100.0, retry_after=2.0)
    assert not limit.may_start(101.9)
    assert limit.may_start(102.0)
    # A 503 with Retry-After pauses too; a 429 without one pauses a little anyway.
    limit.observe(limit.admit(), "server_error", 0.002, now=200.0, retry_after=3.0)
    assert not limit.may_start(202.5) and limit.may_start(203.0)
    limit.observe(limit.admit(), "throttled", 0.002, now=300.0)
    assert not limit.may_start(300.0 + NO_HINT_PAUSE_S / 2)
    assert limit.may_start(300.0 + NO_HINT_PAUSE_S)


def test_a_long_retry_after_is_left_to_delivery_not_waited_out() -> None:
    """Delivery gives the rows back to be due after it (test_delivery.py, 429 stops the run);
    the limit does not hold threads for ten minutes."""
    limit = ConcurrencyLimit(initial=4, maximum=4)
    limit.observe(limit.admit(), "throttled", 0.002, now=0.0, retry_after=MAX_PAUSE_S + 590)
    assert limit.may_start(0.0)
    assert limit.limit == 2


def test_requests_never_sent_say_nothing_about_load() -> None:
    limit = ConcurrencyLimit(initial=4, maximum=8)
    t = limit.admit()
    assert limit.in_flight == 1
    limit.observe(t, "ignored", 0.0, 0.0)
    assert limit.in_flight == 0 and limit.limit == 4


@pytest.mark.parametrize(
    "outcome,signal",
    [
        (SendOutcome("sent", "", 204), "ok"),
        (SendOutcome("rejected", "", 400), "ok"),
        (SendOutcome("retry", "", 429, retry_after=1.0), "throttled"),
        (SendOutcome("retry", "", 503), "server_error"),
        (SendOutcome("retry", "", 500), "server_error"),
        (SendOutcome("retry", "connection refused"), "transport"),
        (SendOutcome("unknown", "read timeout"), "transport"),
        (SendOutcome("not_sent", "store down"), "ignored"),
    ],
)
def test_classify(outcome: SendOutcome, signal: Signal) -> None:
    assert classify(outcome) == signal


# -- through the real delivery ----------------------------------------------------------------

CAPACITY = 4


def test_limit_comes_down_below_a_stand_in_that_answers_429_under_load(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """16 senders against a GA4 that works on 4 at once: the limit comes down to the stand-in's
    capacity, and every event reaches it exactly once, none lost, none twice."""
    now = clock.now()
    rows = [row(f"c{i:03d}", now) for i in range(150)]  # 150 identities: 150 requests
    capture(store, rows, now)
    ga4 = ga4_server.ga4
    ga4.set_faults(
        Faults(latency_ms=10, latency_per_inflight_ms=2, capacity=CAPACITY, retry_after="0.2")
    )
    client = make_client(ga4_server.url, read_timeout=10.0, pool_size=16)
    delivery = Delivery(
        store,
        client,
        clock,
        DeliverySettings(workers=16, max_workers=16, max_attempts=20),
        rng=random.Random(1),
    )
    throttled = 0
    first = None
    for _ in range(40):
        report = delivery.run()
        first = first or report
        throttled += report.throttled
        if set(store.count_by_status()) == {Status.SENT}:
            break
        clock.advance(timedelta(hours=2))  # refused rows are due again
    client.close()

    assert first is not None and first.throttled > 0  # 16 at once is past its capacity
    assert first.sent > 16  # a short Retry-After pauses the run, it does not end it
    assert delivery.concurrency.lowest <= CAPACITY < 16
    assert throttled == ga4.over_capacity
    assert max(ga4.load_seen) <= CAPACITY
    assert set(store.count_by_status()) == {Status.SENT}
    received = Counter(e["params"]["row_key"] for e in ga4.events())
    assert set(received) == {r.key for r in rows}  # nothing lost
    assert max(received.values()) == 1  # nothing twice


def test_a_long_retry_after_sends_workers_waiting_at_the_gate_home_unmarked(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """More threads than the limit: some wait at the gate. When GA4 asks for ten minutes, they
    give their rows back without sending, and nothing is left `sending` or marked started."""
    now = clock.now()
    capture(store, [row(f"g{i:02d}", now) for i in range(40)], now)
    ga4_server.ga4.set_faults(Faults(status_429=1.0, retry_after="600", latency_ms=30))
    client = make_client(ga4_server.url, pool_size=8)
    delivery = Delivery(store, client, clock, DeliverySettings(workers=2, max_workers=8))
    report = delivery.run()
    client.close()
    assert ga4_server.ga4.requests < 10
    assert set(store.count_by_status()) <= {Status.PENDING, Status.RETRY}
    retry = [r for r in statuses(store).values() if r.status == Status.RETRY]
    assert len(retry) == report.retry
    for r in retry:
        assert r.next_attempt_at.replace(tzinfo=UTC) - now >= timedelta(seconds=600)
        if r.reason.startswith("not sent: GA4 asked to slow down"):
            assert r.attempts == 0 and store.attempts_for(r.key) == []
    assert delivery.concurrency.limit == 1  # and the limit came down


def test_metrics_show_where_the_limit_is() -> None:
    metrics = DaemonMetrics()
    metrics.record_delivery(DeliveryReport(concurrency=7))
    assert b"ga4sync_ga4_concurrency_limit 7.0" in metrics.render()


def test_deliveries_sharing_one_limit_share_its_places(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """A daemon delivers for several connectors at once through one engine: together they
    never have more requests in flight than the one limit allows."""
    now = clock.now()
    rows = [row(f"s{i:03d}", now) for i in range(120)]
    capture(store, rows, now)
    ga4 = ga4_server.ga4
    ga4.set_faults(Faults(latency_ms=20, capacity=100))  # capacity: to count what is in flight
    client = make_client(ga4_server.url, pool_size=6)
    shared = ConcurrencyLimit(initial=3, maximum=3)
    settings = DeliverySettings(workers=3)
    deliveries = [Delivery(store, client, clock, settings, concurrency=shared) for _ in range(2)]
    threads = [threading.Thread(target=d.run) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    client.close()
    assert set(store.count_by_status()) == {Status.SENT}
    assert max(ga4.load_seen) <= 3
    received = Counter(e["params"]["row_key"] for e in ga4.events())
    assert set(received) == {r.key for r in rows} and max(received.values()) == 1
