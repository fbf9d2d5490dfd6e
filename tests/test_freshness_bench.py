"""The freshness bench's arithmetic (the bench itself runs for minutes and is not run here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench.freshness import Move, Received, metric_values, move_delays, summarize

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_each_move_is_timed_to_the_first_purchase_ga4_received_for_its_client_id() -> None:
    moves = [
        Move("salesforce", "1.1", T0),
        Move("hubspot_deals", "2.2", T0 + timedelta(seconds=5)),
        Move("salesforce", "3.3", T0 + timedelta(seconds=10)),  # never arrives
    ]
    received = [
        Received("1.1", "qualify_lead", T0 - timedelta(hours=2)),  # the first sync's history
        Received("2.2", "purchase", T0 + timedelta(seconds=25)),
        Received("1.1", "purchase", T0 + timedelta(seconds=12)),
        Received("1.1", "purchase", T0 + timedelta(seconds=40)),  # a resend: not the first
    ]
    delays = move_delays(moves, received)
    assert delays == {moves[0]: 12.0, moves[1]: 20.0}
    s = summarize(moves, delays, poll_s=15)
    assert (s.moves, s.delivered, s.max_s) == (3, 2, 20.0)
    assert s.p50_s == 16.0 and s.p95_s == pytest.approx(19.6)
    assert not s.goal_met, "a move that never arrived misses the goal"
    everything = summarize(moves[:2], delays, poll_s=15)
    assert everything.goal_met  # p95 19.6 s <= 15 + 30 s
    assert not summarize(moves[:2], delays, poll_s=-15).goal_met
    assert not summarize([], {}, poll_s=15).goal_met


def test_metric_values_reads_one_metric_of_a_prometheus_page() -> None:
    page = (
        "# TYPE ga4sync_delivery_delay_seconds histogram\n"
        'ga4sync_delivery_delay_seconds_count{connector="sf"} 3.0\n'
        'ga4sync_delivery_delay_seconds_sum{connector="sf"} 31.5\n'
    )
    assert metric_values(page, "ga4sync_delivery_delay_seconds_count") == {'{connector="sf"}': 3.0}
