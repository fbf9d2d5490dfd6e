"""Salesforce capture cost: API calls and wall time, ga4sync vs a naive per-record poller.

    python -m bench.salesforce --records 100000 --changed 20000

The sandbox org holds `--records` opportunities created a month ago; `--changed` of them move
twice (to Qualification, then to Closed Won or Closed Lost) during the last two days. Both
approaches read the same org over HTTPS with the real simple-salesforce:

- ga4sync: the real connector: `OpportunityHistory` since the watermark, then the stage before
  the window and the mapped fields for the opportunities that moved, in id batches sized to
  Salesforce's URI limit. Timed alone (the same work as the naive poller) and end to end
  through `Engine.capture` (mapping and outbox commit included; delivery has its own bench).
  The no-change poll runs through the Engine, with the watermark it left.
- naive: what a first attempt usually looks like: query every opportunity, then one
  `OpportunityHistory` query per opportunity modified since the last poll.

Each approach does a first sync (72 h look-back) and then a poll with nothing new. Calls are
counted by the sandbox (what the org would bill against its daily limit). The sandbox runs in
this process, so both approaches pay for its CPU alike.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import requests
from ga4sync.connectors.registry import build_connector
from ga4sync.connectors.salesforce_soql import parse_sf_datetime, soql_datetime, soql_quote
from ga4sync.core.model import TimeWindow
from ga4sync.mapping.load import load_mapping
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.pipeline.fetch_spec import fetch_spec
from ga4sync.sandbox.runner import SF_SESSION, SandboxEnvironment
from ga4sync.state.store import StateStore
from simple_salesforce import Salesforce

from bench.common import peak_rss_mb, result_line

LOOKBACK = timedelta(hours=72)


@dataclass
class Measured:
    calls: int
    seconds: float
    transitions: int


def populate(env: SandboxEnvironment, records: int, changed: int, seed: int) -> None:
    rng = random.Random(seed)
    data = env.salesforce.data
    now = env.clock.now().replace(microsecond=0)
    created = now - timedelta(days=30)
    ids = [
        data.create_opportunity(
            created, stage="Prospecting", Amount=1000.0, GA_Client_ID__c=f"{i}.{seed}"
        )
        for i in range(records)
    ]
    span = int(timedelta(hours=47).total_seconds())
    for oid in rng.sample(ids, changed):
        first = now - timedelta(hours=48) + timedelta(seconds=rng.randint(0, span))
        data.move_opportunity(oid, "Qualification", first)
        last = first + timedelta(seconds=rng.randint(1, 3600))
        data.move_opportunity(oid, rng.choice(["Closed Won", "Closed Lost"]), min(last, now))


def ga4sync_fetch(config: Config, env: SandboxEnvironment) -> Measured:
    """The connector alone over the first-sync window: the same work the naive poller does."""
    settings = config.connector("salesforce")
    mapping = load_mapping(str(config.resolve(settings.mapping)))
    connector = build_connector(settings, fetch_spec(mapping), base_dir=config.base_dir)
    before = env.salesforce.data_requests()
    started = time.perf_counter()
    window = TimeWindow(start=env.clock.now() - LOOKBACK)
    try:
        found = sum(len(page.transitions) for page in connector.fetch_transitions(window))
    finally:
        connector.close()
    seconds = time.perf_counter() - started
    assert connector.usage.calls == env.salesforce.data_requests() - before
    return Measured(connector.usage.calls, seconds, found)


def ga4sync_capture(engine: Engine, env: SandboxEnvironment) -> Measured:
    before = env.salesforce.data_requests()
    started = time.perf_counter()
    report = engine.capture("salesforce")
    seconds = time.perf_counter() - started
    assert report.status == "ok", report.error
    assert report.api_calls == env.salesforce.data_requests() - before
    return Measured(report.api_calls, seconds, report.captured)


class NaivePoller:
    """Every opportunity, then one history query per opportunity modified since last time."""

    def __init__(self, env: SandboxEnvironment) -> None:
        session = requests.Session()
        session.verify, session.trust_env = str(env.ca_file), False
        self.sf = Salesforce(session_id=SF_SESSION, instance_url=env.sf_server.url, session=session)
        self.env = env
        self.since = env.clock.now() - LOOKBACK
        self.seen: set[tuple[str, str]] = set()

    def poll(self) -> Measured:
        before = self.env.salesforce.data_requests()
        started = time.perf_counter()
        polled_at = self.env.clock.now()
        found = 0
        for opp in self.sf.query_all_iter(
            "SELECT Id, StageName, Amount, GA_Client_ID__c, SystemModstamp FROM Opportunity"
        ):
            if parse_sf_datetime(opp["SystemModstamp"]) < self.since:
                continue
            history = self.sf.query(
                "SELECT Id, StageName, CreatedDate FROM OpportunityHistory "
                f"WHERE OpportunityId = {soql_quote(opp['Id'])} AND "
                f"CreatedDate >= {soql_datetime(self.since)} ORDER BY CreatedDate, Id"
            )
            for row in history["records"]:
                if (opp["Id"], row["Id"]) not in self.seen:
                    self.seen.add((opp["Id"], row["Id"]))
                    found += 1
        self.since = polled_at - timedelta(minutes=10)
        calls = self.env.salesforce.data_requests() - before
        return Measured(calls, time.perf_counter() - started, found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = SandboxEnvironment(Path(tmp) / "sandbox")
        env.clock.advance(-timedelta(minutes=5))
        env.salesforce.daily_limit = 10_000_000
        env.start()
        try:
            t0 = time.perf_counter()
            populate(env, args.records, args.changed, args.seed)
            print(f"sandbox org: {args.records} opportunities, {args.changed} moved twice "
                  f"({time.perf_counter() - t0:.1f}s to build)")  # fmt: skip
            state = f"sqlite:///{Path(tmp) / 'state.db'}"
            config = load_config(env.write_config(state_url=state, initial_lookback="72h"))
            ours_first = ga4sync_fetch(config, env)
            engine = Engine(config, StateStore.open(config.state_url()))
            try:
                engine_first = ga4sync_capture(engine, env)
                ours_quiet = ga4sync_capture(engine, env)
            finally:
                engine.close()
                engine.store.close()
            naive = NaivePoller(env)
            naive_first = naive.poll()
            naive_quiet = naive.poll()
        finally:
            env.stop()

    moves = ours_first.transitions
    per_10k = ours_first.calls / args.changed * 10_000
    naive_per_10k = naive_first.calls / args.changed * 10_000
    rows = [
        ("first sync", ours_first, naive_first),
        ("no-change poll", ours_quiet, naive_quiet),
    ]
    print(f"{'':16}{'ga4sync calls':>14}{'s':>8}{'naive calls':>13}{'s':>8}{'calls ratio':>13}")
    for label, ours, theirs in rows:
        ratio = theirs.calls / max(ours.calls, 1)
        print(
            f"{label:16}{ours.calls:>14}{ours.seconds:>8.2f}{theirs.calls:>13}"
            f"{theirs.seconds:>8.2f}{ratio:>12.1f}x"
        )
    print(f"transitions found on first sync: ga4sync {moves}, naive {naive_first.transitions}")
    print(
        f"ga4sync end to end through Engine.capture (fetch + map + outbox commit): "
        f"{engine_first.calls} calls, {engine_first.seconds:.2f}s, "
        f"{engine_first.transitions} outbox rows"
    )
    print(f"API calls per 10k changed records: ga4sync {per_10k:.1f}, naive {naive_per_10k:.0f}")
    print(
        f"no-change poll: ga4sync {ours_quiet.calls} call(s) for 1 object, "
        f"naive {naive_quiet.calls}"
    )
    print(
        result_line(
            ratio=naive_first.calls / max(ours_first.calls, 1),
            ga4sync_calls=ours_first.calls,
            naive_calls=naive_first.calls,
            ga4sync_s=ours_first.seconds,
            naive_s=naive_first.seconds,
            time_ratio=naive_first.seconds / max(ours_first.seconds, 1e-9),
            engine_s=engine_first.seconds,
            quiet_calls=ours_quiet.calls,
            naive_quiet_calls=naive_quiet.calls,
            calls_per_10k_changed=per_10k,
            rss_mb=peak_rss_mb(),
        )
    )


if __name__ == "__main__":
    main()
