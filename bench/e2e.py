"""End to end: `ga4sync run` as a user meets it vs the tutorial sender and the `ga4mp` library.

    python -m bench.e2e --events 4000 --latency-ms 50

One run of the real command line in its own process (start-up, config, capture of a CSV file
of N conversions each with its own client id plus a sandbox Salesforce org over HTTPS,
mapping, outbox, delivery) against a GA4 stand-in in a third process with a fixed latency, so
that neither the stand-in nor the Salesforce sandbox competes with ga4sync for its GIL. The
peers send the same kind of event to the same stand-in in the same run, on a smaller sample
(at 50 ms per event they do about 15 a second):

- the tutorial sender: one `requests.post` per event, no session, one at a time;
- `ga4mp` (PyPI, the `bench` extra): one `GtagMP` per client id, its `_base_domain` pointed
  at the stand-in, `send()` per event.

The bound for ga4sync is the lower of workers / latency (the wire) and the events per second
its own process could reach if CPU were the only limit (events / CPU seconds it used: the CPU
ceiling, measured here). Efficiency is events/s over that bound. Then `ga4sync run` again with
nothing to do, on a CSV-only config, for start-up: wall time (`noop_s`, the median of a few
runs), the seconds spent importing (`import_s`, the sum of `-X importtime`'s self times) and the
packages that cost most to import.

With `--slow-under-load` the stand-in's latency grows with the requests in flight and it answers
429 (Retry-After 1 s) above `--capacity`, and the line shows where ga4sync's concurrency settled:
the same CSV is sent twice in the same run, once with the adaptive limit (starting at `workers`,
up to 2x) and once with it off (min_workers = max_workers = workers), each into a fresh state
store. For each: events sent in that `ga4sync run` and events/s (a row GA4 refused is due again
after its backoff, 15-30 s: in this run if it lasts that long, else in a later one), 429s, the
limit the run ended at, and the requests the stand-in had in flight (the median over the second
half of the run, as it saw them). `--adaptive-only` skips the fixed run, to compare two builds of
the controller in turns (run each build's interpreter on this script: the run it starts is
`sys.executable -m ga4sync`).

    python -m bench.e2e --slow-under-load --events 2000 --capacity 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import requests
import yaml
from ga4sync.pipeline.delivery_policy import DeliverySettings
from ga4sync.sandbox.ga4 import Faults, Ga4Sandbox, serve_ga4
from ga4sync.sandbox.runner import SandboxEnvironment

from bench.common import cpu_seconds, peak_rss_mb, result_line, send_one_by_one

NOOP_RUNS = 7
"""No-op runs timed for start-up; the median, as one run on a shared machine can be far off."""
SECRET = "bench-ga4-api-secret"
MEASUREMENT_ID = "G-BENCH0001"
CSV_MAPPING = """\
object: bench_sale
stage_field: type
client_id_field: ga_client_id
currency: USD
csv:
  record_id_column: order_id
  time_column: sold_at
  time_format: "%Y-%m-%dT%H:%M:%S"
  timezone: UTC
rules:
  - name: booked call
    to: call
    event: generate_lead
    params:
      value: {field: amount, type: number}
"""


def _serve_ga4(faults: Faults, port_out: Any, stop: EventType) -> None:
    """Child process: the GA4 stand-in until told to stop; then (events, CPU seconds)."""
    ga4 = Ga4Sandbox(expected_secret=SECRET)
    ga4.set_faults(faults)
    server = serve_ga4(ga4, kind="threads")
    port_out.put(server.port)
    stop.wait()
    port_out.put((len(ga4.events()), ga4.requests, cpu_seconds()))
    server.stop()


def write_csv(path: Path, events: int, now: datetime) -> None:
    """N conversions, each its own client id (as CRM conversions are): one event per request."""
    sold = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    stamp = int(now.timestamp())
    lines = ["order_id,type,sold_at,amount,ga_client_id"]
    lines += [f"B{i:08d},call,{sold},1250,{3_000_000 + i}.{stamp}" for i in range(events)]
    path.write_text("\n".join(lines) + "\n")


def write_config(workdir: Path, env: SandboxEnvironment, ga4_url: str, *, salesforce: bool) -> Path:
    """A config with a CSV connector (read at once: `ready: renamed`) and, if asked, the
    sandbox Salesforce org; GA4 is the stand-in in its own process."""
    written = env.write_config(
        state_url=f"sqlite:///{workdir / 'state.db'}",
        name="sf.yaml",
        salesforce=salesforce,
    )
    doc = yaml.safe_load(written.read_text())
    (workdir / "secrets" / "bench_ga4").write_text(SECRET + "\n")
    (workdir / "bench_mapping.yaml").write_text(CSV_MAPPING)
    doc["ga4"].update(
        {
            "endpoint": ga4_url,
            "measurement_id": MEASUREMENT_ID,
            "api_secret": {"file": "secrets/bench_ga4"},
            # At most `workers` in flight, so the bound workers / latency means what it did
            # before the limit could grow (the slow-under-load runs set their own range).
            "max_workers": DeliverySettings().workers,
        }
    )
    doc["connectors"].append(
        {
            "name": "pos",
            "type": "csv",
            "mapping": "bench_mapping.yaml",
            "path": "inbox/*.csv",
            "ready": "renamed",
        }
    )
    path = workdir / ("e2e.yaml" if salesforce else "csv_only.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (workdir / "inbox").mkdir(exist_ok=True)
    return path


def ga4sync_env() -> dict[str, str]:
    """As an installed ga4sync runs: with byte code (pip compiles a wheel's modules)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_cli(config: Path, extra: Sequence[str] = ()) -> tuple[float, float, str]:
    """`ga4sync run` in its own process: (wall seconds, CPU seconds, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *extra, "-m", "ga4sync", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=config.parent,
        env=ga4sync_env(),
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"ga4sync run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return wall, cpu, out.stdout + out.stderr


def import_profile(config: Path, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """`-X importtime` of a run with nothing to do: (seconds importing, top modules by own
    time). The sum of self times counts every module once."""
    _, _, text = run_cli(config, ["-X", "importtime"])
    own: list[tuple[str, float]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, self_us, _, name = (part.strip() for part in line.replace(":", "|", 1).split("|"))
        own.append((name, int(self_us) / 1e6))
    packages: dict[str, float] = {}
    for name, seconds in own:
        root = ".".join(name.split(".")[:2]) if name.startswith("ga4sync") else name.split(".")[0]
        packages[root] = packages.get(root, 0.0) + seconds
    ranked = sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return sum(s for _, s in own), ranked


def bench_tutorial(base_url: str, events: int) -> float:
    """The tutorial way (bench.common.send_one_by_one)."""
    return send_one_by_one(
        base_url, events, measurement_id=MEASUREMENT_ID, api_secret=SECRET, first_client=4_000_000
    )


def bench_ga4mp(base_url: str, events: int) -> float:
    """The `ga4mp` library as its README shows it: one tracker per client id, `send()`."""
    from ga4mp import GtagMP  # type: ignore[import-untyped]

    stamp = int(time.time())
    t0 = time.perf_counter()
    for i in range(events):
        tracker = GtagMP(
            api_secret=SECRET, measurement_id=MEASUREMENT_ID, client_id=f"{5_000_000 + i}.{stamp}"
        )
        tracker._base_domain = f"{base_url}/mp/collect"
        tracker.send([{"name": "generate_lead", "params": {"value": 1250.0, "currency": "USD"}}])
    return events / (time.perf_counter() - t0)


def start_stand_in(faults: Faults) -> tuple[str, Any, EventType, Any]:
    ctx = mp.get_context("spawn")
    port_q: Any = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(target=_serve_ga4, args=(faults, port_q, stop), daemon=True)
    proc.start()
    return f"http://127.0.0.1:{port_q.get(timeout=60)}", port_q, stop, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="CSV conversions")
    parser.add_argument("--opportunities", type=int, default=200, help="sandbox Salesforce")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--peer-events", type=int, default=100, help="tutorial and ga4mp sample")
    slow = parser.add_argument_group("--slow-under-load")
    slow.add_argument(
        "--slow-under-load",
        action="store_true",
        help="a stand-in that slows down and answers 429 under load: adaptive vs fixed workers",
    )
    slow.add_argument("--capacity", type=int, default=16, help="requests it works on at once")
    slow.add_argument(
        "--ms-per-inflight", type=float, default=2.0, help="latency added per request in flight"
    )
    slow.add_argument("--retry-after", default="1", help="its Retry-After on a 429")
    slow.add_argument("--workers", type=int, default=DeliverySettings().workers)
    slow.add_argument(
        "--adaptive-only",
        action="store_true",
        help="skip the fixed-workers run (A/B of two controllers: run this twice, in turns)",
    )
    args = parser.parse_args()
    if args.slow_under_load:
        slow_under_load(args)
        return
    workers = DeliverySettings().workers

    base_url, port_q, stop, proc = start_stand_in(Faults(latency_ms=args.latency_ms))
    try:
        with tempfile.TemporaryDirectory(prefix="ga4sync-e2e-") as tmp:
            workdir = Path(tmp)
            with SandboxEnvironment(workdir) as env:
                env.seed(count=args.opportunities)
                config = write_config(workdir, env, base_url, salesforce=True)
                csv_only = write_config(workdir, env, base_url, salesforce=False)
                run_cli(csv_only)  # writes the byte code a wheel install ships with
                write_csv(workdir / "inbox" / "sales.csv", args.events, datetime.now(UTC))
                wall, cpu, summary = run_cli(config)
                rss_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
                noop = statistics.median(run_cli(csv_only)[0] for _ in range(NOOP_RUNS))
                import_s, top_imports = import_profile(csv_only)
        tutorial = bench_tutorial(base_url, args.peer_events)
        ga4mp = bench_ga4mp(base_url, args.peer_events)
    finally:
        stop.set()
        recorded, requests_seen, server_cpu = port_q.get(timeout=60)
        proc.join(timeout=30)
    sent = recorded - 2 * args.peer_events
    if sent < args.events:
        raise SystemExit(f"the stand-in recorded {sent} ga4sync events, fewer than {args.events}")
    eps = sent / wall
    wire_bound = workers / (args.latency_ms / 1000)
    cpu_ceiling = sent / cpu
    bound = min(wire_bound, cpu_ceiling)
    print(summary.rstrip())
    print(
        f"GA4 stand-in: own process, {args.latency_ms:g} ms latency, "
        f"{server_cpu / max(requests_seen, 1) * 1e6:.0f} us CPU per request"
    )
    print(
        f"ga4sync run: {sent} events ({args.events} CSV + {sent - args.events} Salesforce) in "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU: {eps:.0f} events/s, peak RSS {rss_mb} MB"
    )
    print(f"tutorial sender (requests.post per event): {tutorial:.1f} events/s")
    print(f"ga4mp {_ga4mp_version()} (send per client id): {ga4mp:.1f} events/s")
    print(
        f"bound: min(workers/latency {wire_bound:.0f}, CPU ceiling {cpu_ceiling:.0f}) = "
        f"{bound:.0f} events/s; efficiency {eps / bound:.2f}"
    )
    print(
        f"start-up, nothing to do (CSV-only config): {noop:.2f} s wall (median of {NOOP_RUNS}); "
        f"importing {import_s:.2f} s, top: "
        + ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in top_imports)
    )
    print(
        result_line(
            ga4sync_eps=round(eps),
            tutorial_eps=round(tutorial, 1),
            ga4mp_eps=round(ga4mp, 1),
            vs_tutorial=round(eps / tutorial, 1),
            vs_ga4mp=round(eps / ga4mp, 1),
            efficiency=round(eps / bound, 3),
            wire_bound=round(wire_bound),
            cpu_ceiling=round(cpu_ceiling),
            cpu_ms_per_event=round(cpu / sent * 1000, 3),
            rss_mb=rss_mb,
            noop_s=round(noop, 3),
            import_s=round(import_s, 3),
            bench_rss_mb=peak_rss_mb(),
        )
    )


def slow_under_load(args: argparse.Namespace) -> None:
    """Adaptive vs fixed concurrency against a stand-in with a capacity (see the docstring)."""
    faults = Faults(
        latency_ms=args.latency_ms,
        latency_per_inflight_ms=args.ms_per_inflight,
        capacity=args.capacity,
        retry_after=args.retry_after,
    )
    base_url, port_q, stop, proc = start_stand_in(faults)
    modes = {
        "adaptive": {"workers": args.workers, "max_workers": min(2 * args.workers, 256)},
        "fixed": dict.fromkeys(("workers", "min_workers", "max_workers"), args.workers),
    }
    if args.adaptive_only:
        del modes["fixed"]
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ga4sync-e2e-slow-") as tmp:
            workdir = Path(tmp)
            with SandboxEnvironment(workdir) as env:
                config = write_config(workdir, env, base_url, salesforce=False)
                for mode, ga4 in modes.items():
                    results[mode] = _slow_run(workdir, config, base_url, ga4, args.events)
    finally:
        stop.set()
        port_q.get(timeout=60)
        proc.join(timeout=30)
    print(
        f"GA4 stand-in: own process, {args.latency_ms:g} ms + {args.ms_per_inflight:g} ms per "
        f"request in flight, 429 (Retry-After {args.retry_after}) past {args.capacity} at once"
    )
    for mode, r in results.items():
        print(
            f"{mode:>8} (workers {r['workers']}): sent {r['sent']} of {args.events} in "
            f"{r['wall']:.2f} s ({r['eps']:.0f} events/s), {r['throttled']} x 429, "
            f"{args.events - r['sent']} left for a later run; limit at the end {r['limit']}, "
            f"stand-in saw {r['load']} in flight (median, 2nd half)"
        )
    a = results["adaptive"]
    figures: dict[str, Any] = {
        "capacity": args.capacity,
        "adaptive_limit": a["limit"],
        "adaptive_load": a["load"],
        "adaptive_429": a["throttled"],
        "adaptive_eps": round(a["eps"]),
        "adaptive_sent": a["sent"],
    }
    if "fixed" in results:
        f = results["fixed"]
        figures.update(
            fixed_workers=args.workers,
            fixed_load=f["load"],
            fixed_429=f["throttled"],
            fixed_eps=round(f["eps"]),
            fixed_sent=f["sent"],
            vs_fixed=round(a["eps"] / max(f["eps"], 1e-9), 2),
        )
    print(result_line(**figures, bench_rss_mb=peak_rss_mb()))


def _slow_run(
    workdir: Path, config: Path, base_url: str, ga4: dict[str, int], events: int
) -> dict[str, Any]:
    """One `ga4sync run` of `events` CSV conversions into a fresh state store."""
    for old in [*workdir.glob("state.db*"), *(workdir / "inbox").glob("*")]:
        old.unlink()
    doc = yaml.safe_load(config.read_text())
    doc["ga4"].update(ga4)
    mode_config = workdir / "slow.yaml"
    mode_config.write_text(yaml.safe_dump(doc, sort_keys=False))
    write_csv(workdir / "inbox" / "sales.csv", events, datetime.now(UTC))
    requests.post(f"{base_url}/sandbox/reset", timeout=10).raise_for_status()
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "ga4sync", "--config", str(mode_config), "run", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=workdir,
        env=ga4sync_env(),
    )
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise SystemExit(f"ga4sync run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    delivery = json.loads(out.stdout.strip().splitlines()[-1])["delivery"]
    seen = requests.get(f"{base_url}/sandbox/hits", timeout=60).json()
    load = seen["load_seen"][len(seen["load_seen"]) // 2 :]
    return {
        "workers": ga4["workers"],
        "sent": delivery["sent"],
        "throttled": delivery.get("throttled", seen["over_capacity"]),
        "limit": delivery.get("concurrency"),
        "wall": wall,
        "eps": delivery["sent"] / wall,
        "load": statistics.median(load) if load else 0,
    }


def _ga4mp_version() -> str:
    from importlib.metadata import version

    return version("ga4mp")


if __name__ == "__main__":
    main()
