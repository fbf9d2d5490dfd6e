"""Freshness: how long a CRM stage move waits before GA4 accepts it, with the daemon running.

    python -m bench.freshness [--poll 15] [--live-seconds 90] [--moves-per-minute 10]

The sandbox Salesforce org (HTTPS) and HubSpot portal run in this process on wall-clock time,
with a GA4 stand-in; the real `ga4sync daemon` runs as a subprocess, polling each connector
every `--poll` seconds. After its first sync (old history, which is not a delivery delay), deals
move to won in both CRMs, several a minute over a few polls, each at a recorded CRM time. The
delay of a move is the time GA4 received (and answered 2xx for) its purchase event minus that
CRM time; matched by the deal's own client id, so nothing in ga4sync is trusted for it.

p50/p95/max are printed against the poll interval and the goal (p95 <= poll + 30 s), and next
to what the daemon reports itself: `ga4sync_delivery_delay_seconds` on `/metrics` and the delay
`ga4sync status --format json` shows per connector. Takes under ~3 minutes by default.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import yaml
from ga4sync.core.clock import ManualClock
from ga4sync.ops.status import percentile
from ga4sync.sandbox.runner import SandboxEnvironment, shipped_or_local_mapping

from bench.common import result_line

GOAL_SLACK_S = 30.0
"""The goal: p95 of the delay at most one poll interval plus this."""
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Move:
    """A stage move the bench made in a sandbox CRM, at the time the CRM recorded."""

    connector: str
    client_id: str
    at: datetime


@dataclass(frozen=True)
class Received:
    """An event the GA4 stand-in received (and answered 2xx for)."""

    client_id: str
    event_name: str
    at: datetime


@dataclass(frozen=True)
class DelaySummary:
    moves: int
    delivered: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    poll_s: float

    @property
    def goal_met(self) -> bool:
        """Every move arrived and p95 <= poll interval + 30 s."""
        return (
            self.delivered == self.moves
            and self.p95_s is not None
            and self.p95_s <= self.poll_s + GOAL_SLACK_S
        )


def move_delays(
    moves: Sequence[Move], received: Iterable[Received], event_name: str = "purchase"
) -> dict[Move, float]:
    """Per move, seconds from its CRM time to the first `event_name` GA4 received for its
    client id; moves GA4 never got are left out (each deal moves to won once)."""
    first: dict[str, datetime] = {}
    for r in received:
        if r.event_name == event_name and (r.client_id not in first or r.at < first[r.client_id]):
            first[r.client_id] = r.at
    return {m: (first[m.client_id] - m.at).total_seconds() for m in moves if m.client_id in first}


def summarize(moves: Sequence[Move], delays: dict[Move, float], poll_s: float) -> DelaySummary:
    values = sorted(delays.values())
    return DelaySummary(
        moves=len(moves),
        delivered=len(values),
        p50_s=percentile(values, 50),
        p95_s=percentile(values, 95),
        max_s=values[-1] if values else None,
        poll_s=poll_s,
    )


# -- the run -------------------------------------------------------------------------------
class WallClock(ManualClock):
    """The sandboxes on real time: the daemon in its own process polls them as it would a CRM."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Deals:
    """Open deals seeded before the daemon starts, each with its own GA client id."""

    salesforce: list[tuple[str, str]]
    hubspot: list[tuple[str, str]]


def seed(env: SandboxEnvironment, per_crm: int) -> Deals:
    """Open deals created three hours ago, and some old history the first sync sends."""
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = int(now.timestamp())
    sf, hs = [], []
    for i in range(per_crm):
        cid = f"{1_000_000 + i}.{stamp}"
        oid = env.salesforce.data.create_opportunity(
            now - timedelta(hours=3), stage="Prospecting", Amount=100.0 + i, GA_Client_ID__c=cid
        )
        if i % 3 == 0:  # old history: sent by the first sync, not a delivery delay
            env.salesforce.data.move_opportunity(oid, "Qualification", now - timedelta(hours=2))
        sf.append((oid, cid))
        cid = f"{2_000_000 + i}.{stamp}"
        rid = env.hubspot.data.create(
            "deals",
            now - timedelta(hours=3),
            {
                "dealname": f"Bench deal {i}",
                "dealstage": "qualifiedtobuy",
                "amount": str(200 + i),
                "deal_currency_code": "USD",
                "ga_client_id": cid,
            },
        )
        hs.append((rid, cid))
    return Deals(sf, hs)


def write_config(env: SandboxEnvironment, workdir: Path, poll_s: float) -> Path:
    path = env.write_config(
        state_url=f"sqlite:///{workdir / 'state.db'}",
        hubspot=[shipped_or_local_mapping("hubspot_deals.yaml")],
    )
    doc = yaml.safe_load(path.read_text())
    for connector in doc["connectors"]:
        connector["every"] = f"{poll_s:g}s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_values(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of one metric in a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name) :]] = float(value)
    return out


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def received(env: SandboxEnvironment) -> list[Received]:
    with env.ga4.lock:
        hits = list(env.ga4.hits)
    return [
        Received(str(h.body.get("client_id")), str(ev.get("name")), h.received_at)
        for h in hits
        for ev in h.body.get("events", [])
    ]


def run(poll_s: float, live_s: float, per_minute: float, workdir: Path) -> DelaySummary:
    env = SandboxEnvironment(workdir / "sandbox", clock=WallClock())
    env.start()
    count = max(2, int(live_s * per_minute / 60))
    deals = seed(env, per_crm=count // 2 + 1)
    config = write_config(env, workdir, poll_s)
    port = free_port()
    log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ga4sync", "--config", str(config), "daemon"]
        + ["--http-host", "127.0.0.1", "--http-port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def alive() -> bool:
        """True, or the bench stops with the daemon's last words."""
        if daemon.poll() is not None:
            tail = (workdir / "daemon.log").read_text()[-2000:]
            raise SystemExit(f"the daemon exited ({daemon.returncode}):\n{tail}")
        return True

    def scrape() -> str:
        alive()
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.ConnectionError:
            return ""

    names = ("salesforce", "hubspot_deals")
    moves: list[Move] = []
    try:
        t0 = time.monotonic()
        wait_for(
            "the daemon's first sync of both connectors",
            lambda: all(
                metric_values(scrape(), "ga4sync_runs_total").get(
                    f'{{connector="{n}",result="ok"}}', 0
                )
                >= 1
                for n in names
            ),
            timeout=60 + 2 * poll_s,
        )
        print(f"first sync done after {time.monotonic() - t0:.1f}s; moving deals", flush=True)
        every = 60.0 / per_minute
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i * every - time.monotonic()))
            at = datetime.now(UTC).replace(microsecond=0)  # Salesforce keeps whole seconds
            if i % 2 == 0:
                oid, cid = deals.salesforce[i // 2]
                env.salesforce.data.move_opportunity(oid, "Closed Won", at)
                moves.append(Move("salesforce", cid, at))
            else:
                rid, cid = deals.hubspot[i // 2]
                env.hubspot.data.move("deals", rid, "closedwon", at)
                moves.append(Move("hubspot_deals", cid, at))
        wait_for(
            "GA4 to receive every move",
            lambda: alive() and len(move_delays(moves, received(env))) == len(moves),
            timeout=2 * poll_s + 60,
        )
        metrics = scrape()
        status = subprocess.run(
            [sys.executable, "-m", "ga4sync", "--config", str(config)]
            + ["status", "--format", "json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        env.stop()
    delays = move_delays(moves, received(env))
    summary = summarize(moves, delays, poll_s)
    for name in names:
        mine = {m: d for m, d in delays.items() if m.connector == name}
        part = summarize([m for m in moves if m.connector == name], mine, poll_s)
        print(
            f"{name}: {part.delivered}/{part.moves} moves, delay p50 {_s(part.p50_s)}, "
            f"p95 {_s(part.p95_s)}, max {_s(part.max_s)}"
        )
    counts = metric_values(metrics, "ga4sync_delivery_delay_seconds_count")
    sums = metric_values(metrics, "ga4sync_delivery_delay_seconds_sum")
    for labels, n in sorted(counts.items()):
        mean = sums.get(labels, 0.0) / n if n else 0.0
        print(f"/metrics ga4sync_delivery_delay_seconds{labels}: {n:.0f} moves, mean {mean:.1f}s")
    _print_status(status)
    return summary


def _print_status(status: subprocess.CompletedProcess[str]) -> None:
    if status.returncode != 0:
        print(f"ga4sync status failed: {status.stderr.strip()[-300:]}")
        return
    for c in json.loads(status.stdout)["connectors"]:
        d = c.get("delay") or {}
        print(
            f"status {c['name']}: {d.get('events', 0)} moves, p50 {_s(d.get('p50_s'))}, "
            f"p95 {_s(d.get('p95_s'))}, max {_s(d.get('max_s'))} (GA4's 2xx as settled)"
        )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=15.0, help="daemon poll interval, seconds")
    parser.add_argument(
        "--live-seconds", type=float, default=90.0, help="how long moves keep arriving"
    )
    parser.add_argument("--moves-per-minute", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ga4sync-freshness-") as tmp:
        s = run(args.poll, args.live_seconds, args.moves_per_minute, Path(tmp))
    print(
        f"delay CRM move -> GA4 2xx over {s.delivered}/{s.moves} moves: p50 {_s(s.p50_s)}, "
        f"p95 {_s(s.p95_s)}, max {_s(s.max_s)}; poll {s.poll_s:g}s, goal p95 <= "
        f"{s.poll_s + GOAL_SLACK_S:g}s: {'met' if s.goal_met else 'NOT met'}"
    )
    print(
        result_line(
            p50_s=s.p50_s if s.p50_s is not None else -1.0,
            p95_s=s.p95_s if s.p95_s is not None else -1.0,
            max_s=s.max_s if s.max_s is not None else -1.0,
            poll_s=s.poll_s,
            goal_met=int(s.goal_met),
            moves=s.moves,
            delivered=s.delivered,
        )
    )
    return 0 if s.goal_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
