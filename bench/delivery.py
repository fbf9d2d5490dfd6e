"""Delivery throughput: ga4sync vs the tutorial way, against the same GA4 sandbox.

    python -m bench.delivery --events 20000 --latency-ms 50

Each event belongs to a different client id (as CRM conversions do), so every request carries
one event and the bound is workers / latency requests per second. The GA4 sandbox runs in its
own process so that its CPU does not compete with the sender for the GIL of this one: on a
2-core machine, measuring both in one interpreter would measure the sandbox. It uses the
threaded server by default: measured there, it keeps up (about 300 us CPU per request in its
own process) and its `time.sleep` latency is exact, while asyncio timers fire up to 1 ms late.

The naive baseline is what most tutorials show: one `requests.post` per event, no session
(so a new TCP connection each time), one at a time. It runs on a smaller sample, because at
50 ms per event 20,000 events would take 17 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from ga4sync.core.clock import SystemClock
from ga4sync.core.model import Ga4Event, Identity, Status
from ga4sync.ga4.payload import group_key, stored_payload
from ga4sync.pipeline.delivery import Delivery, DeliverySettings
from ga4sync.pipeline.ga4_client import Ga4Client
from ga4sync.sandbox.ga4 import Faults, Ga4Sandbox, ServerKind, serve_ga4
from ga4sync.state.store import OutboxRow, StateStore

from bench.common import cpu_seconds, peak_rss_mb, result_line, send_one_by_one

SECRET = "bench-ga4-api-secret"
MEASUREMENT_ID = "G-BENCH0001"


def _serve_ga4(latency_ms: float, kind: ServerKind, port_out: Any, stop: EventType) -> None:
    """Child process: the GA4 sandbox with fixed latency, until told to stop."""
    ga4 = Ga4Sandbox(expected_secret=SECRET)
    ga4.set_faults(Faults(latency_ms=latency_ms))
    server = serve_ga4(ga4, kind=kind)
    port_out.put(server.port)
    stop.wait()
    port_out.put((len(ga4.events()), cpu_seconds()))
    server.stop()


def _outbox_rows(count: int, now: datetime, prefix: str) -> list[OutboxRow]:
    rows = []
    for i in range(count):
        identity = Identity(client_id=f"{1_000_000 + i}.{int(now.timestamp())}")
        event = Ga4Event(
            "generate_lead",
            {"value": 1250.0, "currency": "USD", "lead_source": "bench"},
            now - timedelta(minutes=5),
        )
        payload = stored_payload(identity, event)
        rows.append(
            OutboxRow(
                key=f"{prefix}-{i:08d}",
                connector="bench",
                object_type="Opportunity",
                record_id=f"006{i:012d}",
                field="StageName",
                from_value="Prospecting",
                to_value="Qualification",
                changed_at=now - timedelta(minutes=5),
                detected_by="history",
                status=Status.PENDING,
                rule="qualified",
                event_name="generate_lead",
                payload=payload,
                group_key=group_key(payload),
            )
        )
    return rows


def bench_ga4sync(base_url: str, events: int, workers: int, workdir: Path) -> tuple[float, float]:
    """Returns (events per second, CPU microseconds per event) for ga4sync's delivery."""
    store = StateStore.open(f"sqlite:///{workdir / 'bench.db'}")
    now = datetime.now(UTC)
    rows = _outbox_rows(events, now, "b")
    for i in range(0, len(rows), 2000):
        store.capture(
            connector="bench",
            object_type="Opportunity",
            rows=rows[i : i + 2000],
            watermark=None,
            now=now,
        )
    client = Ga4Client(
        endpoint=base_url, measurement_id=MEASUREMENT_ID, api_secret=SECRET, pool_size=workers
    )
    delivery = Delivery(store, client, SystemClock(), DeliverySettings(workers=workers))
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    report = delivery.run()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    client.close()
    store.close()
    if report.sent != events:
        raise SystemExit(f"ga4sync sent {report.sent} of {events}: {report}")
    lat = sorted(report.latencies)
    print(
        f"ga4sync request latency p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
        f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms over {report.requests} requests"
    )
    return events / wall, cpu / events * 1e6


def bench_naive(base_url: str, events: int) -> float:
    """The tutorial way (bench.common.send_one_by_one)."""
    return send_one_by_one(
        base_url, events, measurement_id=MEASUREMENT_ID, api_secret=SECRET, first_client=2_000_000
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=DeliverySettings().workers)
    parser.add_argument("--naive-events", type=int, default=200, help="naive sample size")
    parser.add_argument(
        "--server",
        choices=["threads", "asyncio"],
        default="threads",
        help="GA4 sandbox server (threads: exact latency; asyncio: less CPU)",
    )
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    port_q: Any = ctx.Queue()
    stop = ctx.Event()
    server = ctx.Process(
        target=_serve_ga4, args=(args.latency_ms, args.server, port_q, stop), daemon=True
    )
    server.start()
    base_url = f"http://127.0.0.1:{port_q.get(timeout=30)}"
    try:
        with tempfile.TemporaryDirectory(prefix="ga4sync-bench-") as tmp:
            eps, cpu_us = bench_ga4sync(base_url, args.events, args.workers, Path(tmp))
        naive_events = min(args.naive_events, args.events)
        naive = bench_naive(base_url, naive_events)
    finally:
        stop.set()
        recorded, server_cpu = port_q.get(timeout=30)
        server.join(timeout=10)
    if recorded != args.events + naive_events:
        raise SystemExit(
            f"sandbox recorded {recorded} events, expected {args.events + naive_events}"
        )
    bound = args.workers / (args.latency_ms / 1000) if args.latency_ms else float("inf")
    efficiency = eps / bound
    print(
        f"GA4 sandbox: separate process ({args.server}), {args.latency_ms:g} ms latency per "
        f"request, {server_cpu / (args.events + naive_events) * 1e6:.0f} us CPU per request"
    )
    print(f"ga4sync: {args.events} events, {args.workers} workers: {eps:.0f} events/s")
    print(
        f"naive (requests.post per event, no session): {naive_events} events: {naive:.1f} events/s"
    )
    print(f"bound workers/latency: {bound:.0f} events/s; efficiency {efficiency:.2f}")
    print(f"ga4sync CPU per event: {cpu_us:.0f} us; sandbox recorded {recorded} events")
    print(
        result_line(
            ratio=round(eps / naive, 1),
            ga4sync_eps=round(eps),
            naive_eps=round(naive, 1),
            efficiency=round(efficiency, 3),
            cpu_us_per_event=round(cpu_us),
            rss_mb=peak_rss_mb(),
        )
    )


if __name__ == "__main__":
    main()
