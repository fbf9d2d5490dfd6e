"""Exactly-once under a hostile GA4: 20 % of requests fail in each way, delivery is driven to
completion on an injected clock, and every event ends `sent` once (as GA4 counts) or `unknown` /
`dead` / `invalid` and listed, with no duplicate GA4 would count.

With `reset_after` and `stall` the sandbox DID record the hit while we mark the row unknown:
that is the point of `unknown`. Only a purchase with a transaction_id may be resent after that,
because GA4 deduplicates exactly those; `Ga4Sandbox.counted_events` applies the same rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest
from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Status
from ga4sync.pipeline.delivery import Delivery, DeliverySettings
from ga4sync.sandbox.ga4 import Faults
from ga4sync.state.store import StateStore

from tests.test_delivery import (
    Ga4Server,
    capture,
    clock,
    closed_port,
    ga4_server,
    make_client,
    row,
)

__all__ = ["clock", "ga4_server"]  # fixtures used below

FAULTS = {
    "500": Faults(status_500=0.2),
    "503": Faults(status_503=0.2, retry_after="90"),
    "429": Faults(status_429=0.2, retry_after="30"),
    "reset_before": Faults(reset_before=0.2),
    "reset_after": Faults(reset_after=0.2),
    "stall": Faults(stall=0.2, stall_seconds=0.5),
    "400": Faults(status_400=0.2),
    "mixed": Faults(
        status_500=0.1,
        status_429=0.1,
        reset_before=0.1,
        reset_after=0.1,
        stall=0.1,
        stall_seconds=0.5,
    ),
}
FINAL = {Status.SENT, Status.UNKNOWN, Status.DEAD, Status.INVALID}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_every_event_ends_sent_once_or_listed(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock, kind: str
) -> None:
    now = clock.now()
    rows = []
    for i in range(60):
        cid = f"{1000 + i % 20}.1700000000"  # 20 identities: requests carry 3 events each
        if i % 2:
            rows.append(
                row(
                    f"r{i:02d}",
                    now,
                    client_id=cid,
                    event="purchase",
                    params={"transaction_id": f"T-{i}"},
                    resend_if_unknown=i % 4 == 1,
                    rule="won",
                )
            )
        else:
            rows.append(row(f"r{i:02d}", now, client_id=cid))
    capture(store, rows, now)
    ga4_server.ga4.set_faults(replace(FAULTS[kind], seed=7))
    client = make_client(ga4_server.url, read_timeout=0.2)
    delivery = Delivery(store, client, clock, DeliverySettings(workers=8, max_attempts=6))
    for _ in range(30):
        delivery.run()
        counts = store.count_by_status()
        if not counts.get(Status.PENDING) and not counts.get(Status.RETRY):
            break
        clock.advance(timedelta(hours=2))
    client.close()

    final = {r["key"]: r for r in store.list_outbox()}
    assert {r["status"] for r in final.values()} <= FINAL
    raw = Counter(e["params"]["row_key"] for e in ga4_server.ga4.events())
    counted = Counter(e["params"]["row_key"] for e in ga4_server.ga4.counted_events())
    assert max(counted.values(), default=0) <= 1, "GA4 would count an event twice"
    for key, r in final.items():
        resendable = key in {x.key for x in rows if x.resend_if_unknown}
        if r["status"] == Status.SENT:
            assert counted[key] == 1, key
            assert raw[key] == 1 or resendable, key
        elif r["status"] == Status.UNKNOWN:
            # Resendable purchases may have reached GA4 on several attempts; it keeps one.
            assert raw[key] <= 1 or resendable, key
        else:
            assert raw[key] == 0, key
        if r["status"] != Status.SENT:
            assert r["reason"], key
    for key in raw:
        assert final[key]["status"] in (Status.SENT, Status.UNKNOWN), key
    listed = store.list_outbox(statuses=[Status.UNKNOWN, Status.DEAD, Status.INVALID])
    assert {r["key"] for r in listed} == {k for k, r in final.items() if r["status"] != "sent"}
    sent = sum(1 for r in final.values() if r["status"] == Status.SENT)
    if kind in ("500", "503", "429"):
        assert sent == 60  # retriable failures only: everything gets through
    else:
        assert sent >= 20


def test_connection_refused_then_faulty_ga4_still_sends_each_event_once(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """GA4 unreachable for two rounds (every connect refused), then back with 20 % 500s."""
    now = clock.now()
    capture(store, [row(f"c{i:02d}", now) for i in range(40)], now)
    down = make_client(f"http://127.0.0.1:{closed_port()}")
    for _ in range(2):
        Delivery(store, down, clock, DeliverySettings(workers=8)).run()
        assert set(store.count_by_status()) == {Status.RETRY}
        clock.advance(timedelta(hours=2))
    down.close()
    ga4_server.ga4.set_faults(Faults(status_500=0.2, seed=5))
    up = make_client(ga4_server.url)
    for _ in range(10):
        Delivery(store, up, clock, DeliverySettings(workers=8)).run()
        if set(store.count_by_status()) == {Status.SENT}:
            break
        clock.advance(timedelta(hours=2))
    up.close()
    assert store.count_by_status() == {Status.SENT: 40}
    raw = Counter(e["params"]["row_key"] for e in ga4_server.ga4.events())
    assert sorted(raw) == [f"c{i:02d}" for i in range(40)] and set(raw.values()) == {1}
