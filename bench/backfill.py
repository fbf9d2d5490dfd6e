"""Backfill end to end: ga4sync's streaming backfill vs load-everything-then-send.

    python -m bench.backfill --records 1000000 --changed 200000

The sandbox org holds `--records` opportunities; `--changed` of them moved stage inside the
backfill window (the last 48 h), the rest last changed a month ago. Both sides read the same
Salesforce sandbox over HTTPS through simple-salesforce and send to the same GA4 sandbox at
0 ms latency. The sandbox servers run in their own process, and each side runs in a child
process of its own, so each side's peak RSS is its own and nothing else's.

- ga4sync: `Backfill` over the window: pages of history rows, each page mapped and committed
  to the outbox (SQLite) with its watermark, and delivered by the pipelined sender beside the
  capture (`first_sent_s`: when GA4 accepted the first event, from the start of the backfill).
- naive: what a one-off script does: `query_all` the whole Opportunity table and the history
  into memory (pandas), diff the stages, map, then `requests.post` each event in turn.

On 2 cores the sandbox's SOQL engine (a Python scan per query) dominates at 1M records; run a
smaller size for quick figures. The RESULT line names the size it measured.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb, result_line

WINDOW = timedelta(hours=48)
TARGETS = ("Qualification", "Closed Won", "Closed Lost", "Value Proposition")


def _populate(data: Any, records: int, changed: int, now: datetime, seed: int) -> None:
    rng = random.Random(seed)
    old = now - timedelta(days=30)
    moved = set(rng.sample(range(records), changed))
    for i in range(records):
        oid = data.create_opportunity(
            old + timedelta(seconds=i % 86400),
            stage="Prospecting",
            Amount=float(rng.choice([500, 2500, 9900])),
            GA_Client_ID__c=f"{100_000_000 + i}.{1_700_000_000 + i % 1000}",
        )
        if i in moved:
            at = (
                now - WINDOW + timedelta(seconds=rng.randint(60, int(WINDOW.total_seconds()) - 600))
            )
            data.move_opportunity(oid, rng.choice(TARGETS), at)


def _serve(records: int, changed: int, workdir: str, out: Any, stop: EventType) -> None:
    """Child process: Salesforce + GA4 sandboxes with the generated org, until told to stop."""
    from ga4sync.sandbox.runner import SandboxEnvironment

    env = SandboxEnvironment(Path(workdir))
    t0 = time.perf_counter()
    _populate(env.salesforce.data, records, changed, env.clock.now(), seed=7)
    env.start()
    config = env.write_config(state_url=f"sqlite:///{Path(workdir) / 'state.db'}")
    out.put((str(config), time.perf_counter() - t0))
    stop.wait()
    out.put(len(env.ga4.events()))
    env.stop()


def _ga4sync_side(config_path: str, out: Any) -> None:
    """Child process: `ga4sync backfill` over the window (the library call the CLI makes)."""
    from ga4sync.pipeline.backfill import Backfill, BackfillRequest
    from ga4sync.pipeline.config import load_config
    from ga4sync.pipeline.engine import Engine
    from ga4sync.state.store import StateStore

    config = load_config(config_path)
    store = StateStore.open(config.state_url())
    engine = Engine(config, store)
    now = datetime.now(UTC)
    request = BackfillRequest("salesforce", now - WINDOW - timedelta(minutes=5), now)
    base_rss = peak_rss_mb()  # the interpreter and its imports, before any work
    first_sent: list[float] = []
    t0 = time.perf_counter()

    def outcome(_row: object, status: object, _outcome: object) -> None:
        if not first_sent and status == "sent":
            first_sent.append(time.perf_counter() - t0)

    summary = Backfill(engine, request).run(on_outcome=outcome)
    wall = time.perf_counter() - t0
    engine.close()
    store.close()
    out.put(
        {
            "wall": wall,
            "first_sent": first_sent[0] if first_sent else wall,
            "transitions": summary.captured,
            "sent": summary.sent,
            "failed": sum(summary.failed.values()),
            "rss": peak_rss_mb(),
            "base_rss": base_rss,
        }
    )


def _naive_side(config_path: str, out: Any) -> None:
    """Child process: load everything, diff in pandas, then post each event."""
    import pandas as pd
    import requests
    from ga4sync.core.model import MappedEvent, StageTransition
    from ga4sync.ga4.payload import request_body, stored_payload
    from ga4sync.mapping.apply import apply_mapping
    from ga4sync.mapping.load import load_mapping
    from ga4sync.pipeline.config import load_config
    from simple_salesforce import Salesforce

    config = load_config(config_path)
    settings: Any = config.connectors[0]
    mapping = load_mapping(str(config.resolve(settings.mapping)))
    base = config.base_dir
    session = requests.Session()
    session.verify = str(base / settings.ca_file) if settings.ca_file else True
    session.trust_env = False
    token = settings.auth.session_id.resolve(base).get_secret_value()
    sf = Salesforce(session_id=token, instance_url=settings.instance_url, session=session)
    secret = config.ga4.api_secret.resolve(base).get_secret_value()
    now = datetime.now(UTC)
    since = (now - WINDOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

    t0 = time.perf_counter()
    opps = pd.DataFrame(
        sf.query_all(
            "SELECT Id, StageName, Amount, CurrencyIsoCode, LeadSource, GA_Client_ID__c "
            "FROM Opportunity"
        )["records"]
    ).drop(columns="attributes")
    history = pd.DataFrame(
        sf.query_all(
            "SELECT Id, OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
            "ORDER BY OpportunityId, CreatedDate, Id"
        )["records"]
    ).drop(columns="attributes")
    history["previous"] = history.groupby("OpportunityId")["StageName"].shift()
    moves = history[
        (history["CreatedDate"] >= since.replace("Z", ".000+0000"))
        & (history["StageName"] != history["previous"])
    ]
    records = opps.set_index("Id").to_dict("index")
    bodies = []
    for row in moves.itertuples():
        fields = {"Id": row.OpportunityId, **records[row.OpportunityId]}
        t = StageTransition(
            connector="salesforce",
            object_type="Opportunity",
            record_id=row.OpportunityId,
            field="StageName",
            from_value=None if pd.isna(row.previous) else row.previous,
            to_value=row.StageName,
            changed_at=datetime.fromisoformat(row.CreatedDate),
            fields=fields,
        )
        result = apply_mapping(mapping, t)
        if isinstance(result, MappedEvent):
            bodies.append(request_body([stored_payload(result.identity, result.event)]))
    sent = 0
    url = f"{config.ga4.endpoint}/mp/collect"
    params = {"measurement_id": config.ga4.measurement_id, "api_secret": secret}
    for body in bodies:
        requests.post(url, params=params, json=body, timeout=10).raise_for_status()
        sent += 1
    out.put(
        {
            "wall": time.perf_counter() - t0,
            "transitions": len(moves),
            "sent": sent,
            "rss": peak_rss_mb(),
        }
    )


def _in_child(ctx: Any, target: Any, *args: Any) -> dict[str, Any]:
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, q))
    proc.start()
    result: dict[str, Any] = q.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=200_000)
    parser.add_argument("--skip-naive", action="store_true", help="only measure ga4sync")
    args = parser.parse_args()
    if not 0 < args.changed <= args.records:
        parser.error("--changed must be between 1 and --records")

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ga4sync-bench-backfill-") as tmp:
        out = ctx.Queue()
        stop = ctx.Event()
        server = ctx.Process(target=_serve, args=(args.records, args.changed, tmp, out, stop))
        server.start()
        config_path, setup_s = out.get(timeout=3600)
        print(
            f"sandbox: {args.records} opportunities, {args.changed} moved in the last 48 h "
            f"(built in {setup_s:.0f} s, separate process)"
        )
        try:
            ours = _in_child(ctx, _ga4sync_side, config_path)
            print(
                f"ga4sync backfill: {ours['transitions']} transitions, {ours['sent']} sent, "
                f"{ours['failed']} failed in {ours['wall']:.1f} s (first event GA4 accepted "
                f"after {ours['first_sent']:.1f} s); peak RSS {ours['rss']} MB "
                f"({ours['base_rss']} MB of it before any work: interpreter and imports)"
            )
            naive: dict[str, Any] | None = None
            if not args.skip_naive:
                naive = _in_child(ctx, _naive_side, config_path)
                print(
                    f"naive load-everything: {naive['transitions']} transitions, "
                    f"{naive['sent']} sent in {naive['wall']:.1f} s; peak RSS {naive['rss']} MB"
                )
        finally:
            stop.set()
            recorded = out.get(timeout=60)
            server.join(timeout=30)
        print(f"GA4 sandbox recorded {recorded} events in total")
    ours_tps = ours["transitions"] / ours["wall"]
    figures: dict[str, float | int | str] = {
        "records": args.records,
        "changed": args.changed,
        "ga4sync_s": round(ours["wall"], 1),
        "first_sent_s": round(ours["first_sent"], 1),
        "ga4sync_tps": round(ours_tps),
        "rss_mb": ours["rss"],
        "base_rss_mb": ours["base_rss"],
    }
    if naive is not None:
        naive_tps = naive["transitions"] / naive["wall"]
        figures = {
            "ratio": round(ours_tps / naive_tps, 2),
            **figures,
            "naive_s": round(naive["wall"], 1),
            "naive_tps": round(naive_tps),
            "naive_rss_mb": naive["rss"],
        }
    print(result_line(**figures))


if __name__ == "__main__":
    main()
