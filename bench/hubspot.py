"""HubSpot capture cost: ga4sync's search + history batch read vs fetching every deal each poll.

    python -m bench.hubspot --deals 100000 --changed 25000

The account holds `--deals` deals created weeks ago; `--changed` of them moved stage in the last
two hours. Both approaches then poll twice, the second time with nothing new:
- ga4sync: `Engine.capture` (search on `hs_lastmodifieddate` from the watermark, 200 per page,
  split past the 10,000 cap, batch read with `propertiesWithHistory`, rows into a SQLite state
  store);
- naive: page through every deal with `propertiesWithHistory=dealstage` (50 per page, HubSpot's
  cap for history), and keep the moves inside the same window.
Both use the real `hubspot-api-client`, read raw JSON (the SDK's model parsing would dominate
both), and meet HubSpot's limits (`--limits hubspot`: 5 searches/s, 190 calls per 10 s;
`--limits none` to measure CPU only). The sandbox runs in its own process so that its CPU does
not compete for this interpreter's GIL. Both must find the same moves, or the bench fails.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from ga4sync.connectors.hubspot_api import parse_hs_time
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.hubspot import HubspotSandbox, RateLimits
from ga4sync.sandbox.hubspot_data import DEFAULT_DEAL_STAGES, HubspotData
from ga4sync.state.store import StateStore
from hubspot import HubSpot

from bench.common import peak_rss_mb, result_line

TOKEN = "bench-hubspot-token"
LOOKBACK = timedelta(hours=3)
STAGES = [s.id for s in DEFAULT_DEAL_STAGES]

Move = tuple[str, str, str]
"""(deal id, stage, time in ms) of one stage move."""


def build_account(deals: int, changed: int, now: datetime, seed: int = 7) -> HubspotData:
    """Deals created 10-40 days ago; `changed` of them moved one or two stages recently."""
    rng = random.Random(seed)
    data = HubspotData()
    ids = []
    for i in range(deals):
        created = now - timedelta(days=40) + timedelta(seconds=i * 25)
        props = {"dealstage": STAGES[0], "amount": str(rng.choice([500, 1200, 9900]))}
        props["ga_client_id"] = f"{rng.randint(10**8, 2 * 10**9)}.{rng.randint(10**9, 2 * 10**9)}"
        ids.append(data.create("deals", created, props))
    span = (timedelta(hours=2) - timedelta(minutes=1)).total_seconds()
    for n, rid in enumerate(rng.sample(ids, changed)):
        at = now - timedelta(hours=2) + timedelta(seconds=span * n / max(changed, 1))
        data.move("deals", rid, STAGES[1], at)
        if n % 5 == 0:  # some deals move twice between polls
            data.move("deals", rid, STAGES[5], at + timedelta(seconds=30))
    return data


def _serve(
    deals: int, changed: int, now_iso: str, limits: dict[str, Any], port_out: Any, stop: EventType
) -> None:
    """Child process: the HubSpot sandbox over the bench account, until told to stop."""
    now = datetime.fromisoformat(now_iso)
    sandbox = HubspotSandbox(
        build_account(deals, changed, now),
        clock=lambda: now,
        limits=RateLimits(**limits),
        tokens={TOKEN},
    )
    server = sandbox.serve()
    port_out.put(server.port)
    stop.wait()
    port_out.put(dict(sandbox.counts))
    server.stop()


# -- naive -------------------------------------------------------------------------------------
class NaivePoller:
    """Every poll reads every deal with its stage history: the approach ga4sync replaces."""

    def __init__(self, host: str) -> None:
        self.api = HubSpot(access_token=TOKEN, host=host).crm.objects.basic_api
        self.calls = 0

    def _page(self, after: str | None) -> dict[str, Any]:
        while True:
            self.calls += 1
            try:
                response = self.api.get_page(
                    "deals",
                    limit=50,
                    after=after,
                    properties=["dealstage", "amount", "ga_client_id"],
                    properties_with_history=["dealstage"],
                    archived=False,
                    _preload_content=False,
                )
            except Exception as exc:
                if getattr(exc, "status", None) != 429:
                    raise
                headers = getattr(exc, "headers", None) or {}
                interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
                time.sleep(float(interval) / 1000 if interval else 1.0)
                continue
            data: dict[str, Any] = json.loads(response.data)
            return data

    def poll(self, start: datetime) -> set[Move]:
        moves: set[Move] = set()
        after: str | None = None
        start_ms = _ms(start)
        while True:
            page = self._page(after)
            for record in page.get("results", []):
                history = (record.get("propertiesWithHistory") or {}).get("dealstage") or []
                for entry in history:
                    at = parse_hs_time(entry.get("timestamp"))
                    if at is not None and _ms(at) >= start_ms:
                        moves.add((str(record["id"]), str(entry["value"]), str(_ms(at))))
            nxt = (page.get("paging") or {}).get("next")
            if not nxt:
                return moves
            after = str(nxt["after"])


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


# -- ga4sync ------------------------------------------------------------------------------------
def ga4sync_engine(workdir: Path, host: str, search_rate: float) -> Engine:
    (workdir / "token").write_text(TOKEN)
    (workdir / "ga4").write_text("bench-ga4-secret")
    config = {
        "ga4": {
            "measurement_id": "G-BENCH0001",
            "api_secret": {"file": "ga4"},
            "endpoint": "http://127.0.0.1:9",
        },
        "state": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "connectors": [
            {
                "name": "hubspot_deals",
                "type": "hubspot",
                "mapping": str(MAPPINGS_DIR / "hubspot_deals.yaml"),
                "host": host,
                "access_token": {"file": "token"},
                "initial_lookback": f"{int(LOOKBACK.total_seconds())}s",
                "search_rate": search_rate,
            }
        ],
    }
    path = workdir / "ga4sync.yaml"
    path.write_text(json.dumps(config))
    loaded = load_config(path)
    return Engine(loaded, StateStore.open(loaded.state_url()))


def ga4sync_moves(engine: Engine) -> set[Move]:
    rows = engine.store.list_outbox(connector="hubspot_deals")
    return {(r.record_id, r.to_value, str(_ms(r.changed_at.replace(tzinfo=UTC)))) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=25_000)
    parser.add_argument("--limits", choices=["hubspot", "none"], default="hubspot")
    args = parser.parse_args()
    limits = (
        RateLimits()
        if args.limits == "hubspot"
        else RateLimits(search_per_window=10**9, burst=10**9, daily=10**9)
    )
    now = datetime.now(UTC) - timedelta(minutes=10)
    ctx = mp.get_context("spawn")
    port_out, stop = ctx.Queue(), ctx.Event()
    limit_args = {k: getattr(limits, k) for k in vars(limits)}
    child = ctx.Process(
        target=_serve,
        args=(args.deals, args.changed, now.isoformat(), limit_args, port_out, stop),
    )
    child.start()
    host = f"http://127.0.0.1:{port_out.get(timeout=600)}"
    search_rate = 4.0 if args.limits == "hubspot" else 10_000.0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-hubspot-") as tmp:
            engine = ga4sync_engine(Path(tmp), host, search_rate)
            t0 = time.perf_counter()
            first = engine.capture("hubspot_deals")
            t1 = time.perf_counter()
            again = engine.capture("hubspot_deals")
            t2 = time.perf_counter()
            found = ga4sync_moves(engine)
            engine.close()
            engine.store.close()
            if first.status != "ok" or again.status != "ok":
                raise SystemExit(f"ga4sync capture failed: {first.error or again.error}")
        naive = NaivePoller(host)
        start = now - LOOKBACK
        t3 = time.perf_counter()
        naive_found = naive.poll(start)
        naive_first_calls = naive.calls
        t4 = time.perf_counter()
        naive.poll(start)
        t5 = time.perf_counter()
        naive_poll_calls = naive.calls - naive_first_calls
    finally:
        stop.set()
        counts = port_out.get(timeout=60)
        child.join(timeout=60)
    if found != naive_found:
        raise SystemExit(
            f"the two approaches disagree: ga4sync {len(found)} moves, naive {len(naive_found)}"
        )
    print(
        f"account: {args.deals} deals, {args.changed} changed ({len(found)} stage moves), "
        f"limits: {args.limits}"
    )
    print(f"{'':10} {'first sync':>22} {'no-change poll':>22}")
    print(
        f"{'ga4sync':10} {first.api_calls:>8} calls {t1 - t0:>7.1f} s "
        f"{again.api_calls:>8} calls {t2 - t1:>7.2f} s"
    )
    print(
        f"{'naive':10} {naive_first_calls:>8} calls {t4 - t3:>7.1f} s "
        f"{naive_poll_calls:>8} calls {t5 - t4:>7.2f} s"
    )
    per_10k = first.api_calls * 10_000 / max(args.changed, 1)
    print(f"ga4sync calls per 10k changed deals: {per_10k:.0f}; sandbox saw {counts}")
    print(
        f"ratio (naive/ga4sync): first sync {naive_first_calls / first.api_calls:.1f}x calls, "
        f"{(t4 - t3) / (t1 - t0):.1f}x time; no-change poll "
        f"{naive_poll_calls / max(again.api_calls, 1):.0f}x calls, "
        f"{(t5 - t4) / max(t2 - t1, 1e-6):.0f}x time"
    )
    print(
        result_line(
            ratio=round(naive_first_calls / first.api_calls, 1),
            poll_ratio=round(naive_poll_calls / max(again.api_calls, 1), 1),
            ga4sync_first_calls=first.api_calls,
            naive_first_calls=naive_first_calls,
            ga4sync_poll_calls=again.api_calls,
            naive_poll_calls=naive_poll_calls,
            calls_per_10k=round(per_10k),
            ga4sync_first_s=round(t1 - t0, 1),
            naive_first_s=round(t4 - t3, 1),
            ga4sync_poll_s=round(t2 - t1, 2),
            naive_poll_s=round(t5 - t4, 1),
            rss_mb=peak_rss_mb(),
        )
    )


if __name__ == "__main__":
    main()
