"""Crash harness: SIGKILL `ga4sync run` at random points, restart, and prove exactly-once.

    python -m bench.chaos --kills 40 --opportunities 200 --backend both

`run_chaos(commands=("run", "backfill", "daemon"), signals=(SIGTERM, SIGKILL))` interrupts
backfills and daemons too, and holds every SIGTERM to a clean stop: the documented exit code,
no row left `sending` or `unknown`.

The sandbox Salesforce and GA4 live in this process; each `ga4sync run` is a real subprocess
killed after a random delay, so it dies during start-up, during capture (small CRM pages make
capture take several transactions), between claim and send, or between send and commit (GA4
latency widens those windows). Between runs the CRM changes. Then clean runs finish the work,
and the check is the issue's promise: the CRM's every transition is in the outbox once, and GA4
counted every sendable one exactly once, except rows in `unknown` (the request may have gone
out when the process died), which must all be listed by `ga4sync outbox list --status unknown`.

Baseline (same run): the same events replayed by a naive sender (post, then mark sent; after
a crash send whatever is not marked) killed the same number of times. Its duplicates are what
the claim-before-send design turns into listed `unknown` rows; both are on the RESULT line.

Unknown means unknown: a row claimed but whose request never left goes back to `pending` after
a crash, so `unknown` rows should be what was really in flight when the process died. The RESULT
line has, per SIGKILL, the unknown rows (`unknown_per_kill`), the requests GA4 really received
whose answer was lost (`in_flight_requests_per_kill`, with their rows `in_flight_rows_per_kill`)
and the unknown rows GA4 never got (`unknown_never_sent`: marked "request started" in the
instant before the kill, at most one request per sender thread per kill).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.generator import OpportunityGenerator
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from bench.common import result_line

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class ChaosReport:
    runs: int = 0
    kills: int = 0
    transitions: int = 0
    sent: int = 0
    unknown: int = 0
    skipped: int = 0
    ga4_events: int = 0
    raw_purchase_repeats: int = 0
    """A purchase resent after a crash (resend_if_unknown): GA4 dedups it by transaction_id."""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    naive_duplicates: int = 0
    """Events GA4 got twice from the naive sender replaying the same events under kills."""
    killed_in_capture: int = 0
    """Runs whose capture never finished (their `runs` row is still `running`)."""
    unknown_not_in_ga4: int = 0
    """Killed between claim and send: the request never left."""
    unknown_in_ga4: int = 0
    """Killed between send and commit: GA4 has it, the store could not know."""
    unknown_requests_in_ga4: int = 0
    """Requests GA4 received that carry an `unknown` row: what was really in flight."""
    sigkills: int = 0
    graceful_stops: int = 0
    """SIGTERMs that reached a running ga4sync and ended in a clean stop."""
    sigkilled: bool = False
    """A SIGKILL has hit a running process (from then on `unknown` rows are expected)."""
    terms_in_startup: int = 0
    """SIGTERMs that arrived before Python had installed the handler (nothing started yet)."""


def expected_transitions(sandbox: SandboxEnvironment) -> set[tuple[str, str, datetime]]:
    """Every stage change the sandbox org recorded: history rows whose stage differs."""
    rows = sorted(
        sandbox.salesforce.data.rows("OpportunityHistory", include_deleted=False),
        key=lambda r: (r["OpportunityId"], r["CreatedDate"], r["Id"]),
    )
    out: set[tuple[str, str, datetime]] = set()
    last: dict[str, str] = {}
    for row in rows:
        opp, stage = row["OpportunityId"], row["StageName"]
        if last.get(opp) != stage:
            out.add((opp, stage, row["CreatedDate"].replace(microsecond=0)))
        last[opp] = stage
    return out


def fingerprint(client_id: Any, event: dict[str, Any]) -> str:
    return json.dumps(
        [client_id, event.get("name"), event.get("timestamp_micros"), event.get("params")],
        sort_keys=True,
    )


def chaos_config(sandbox: SandboxEnvironment, state_url: str, *, lease: str = "2s") -> Path:
    """Sandbox config with a short lease: a killed sender's rows turn `unknown` quickly."""
    path = sandbox.write_config(state_url=state_url, name="chaos.yaml")
    doc = yaml.safe_load(path.read_text())
    # The lease must outlast connect + read timeout (config refuses less).
    doc["ga4"].update(
        {"workers": 2, "lease": lease, "connect_timeout": "0.5s", "read_timeout": "1s"}
    )
    doc["connectors"][0]["page_size"] = 200
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


STOP_GRACE_S = 20.0
"""How long a SIGTERM'd process may take to finish its step in flight and commit."""
START_GRACE_S = 120.0
"""How long a process may take to start its work (a new `runs` row) on a loaded machine."""
EXPECTED_ON_SIGTERM = {"run": {0}, "daemon": {0}, "backfill": {130}}
"""Exit codes after a graceful stop: `run` and `daemon` resume on the next start (0); an
interrupted backfill is not done, so it exits 130 like Ctrl-C and its Job/unit is re-run."""


@dataclass(frozen=True)
class Interruption:
    killed: bool
    """The signal reached a process that had not finished on its own."""
    returncode: int | None


def command_args(kind: str, window: tuple[str, str] | None = None) -> list[str]:
    """The CLI arguments for one chaos process: `run`, `daemon` or `backfill` of a window."""
    if kind == "backfill":
        start, end = window or ("2000-01-01", "2100-01-01")
        return ["backfill", "--connector", "salesforce", "--from", start, "--to", end]
    return [kind]


def ga4sync_run(
    config: Path,
    log: Path,
    kill_after: float | None,
    *,
    args: list[str] | None = None,
    sig: signal.Signals = signal.SIGKILL,
    at_work: Callable[[], bool] | None = None,
) -> Interruption:
    """One ga4sync subprocess (`run` unless told otherwise), sent `sig` after `kill_after`.

    With `at_work`, `kill_after` counts from the moment it first holds (the process has started
    its work) instead of from the spawn: on a loaded machine Python's start-up alone can outlast
    a window counted from the spawn, and a SIGTERM meant to land mid-work would land before the
    handler exists.
    """
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ga4sync", "--config", str(config), *(args or ["run"])],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if kill_after is not None and at_work is not None:
            deadline = time.monotonic() + START_GRACE_S
            while proc.poll() is None and not at_work() and time.monotonic() < deadline:
                time.sleep(0.02)
        try:
            return Interruption(False, proc.wait(timeout=kill_after if kill_after else 120))
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        try:
            return Interruption(True, proc.wait(timeout=STOP_GRACE_S))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return Interruption(True, None)


def run_started(store: StateStore, runs_before: int) -> bool:
    return last_run_id(store) > runs_before


def last_run_id(store: StateStore) -> int:
    runs = store.last_runs(1)
    return int(runs[0].id) if runs else 0


def check_graceful_stop(
    kind: str, outcome: Interruption, store: StateStore, report: ChaosReport, runs_before: int
) -> None:
    """After a SIGTERM: the documented exit code, and nothing left mid-send.

    Signalled during Python start-up, before its handler exists, a process dies of the signal:
    allowed while it had not started a capture (no new `runs` row). `unknown` rows must come
    from SIGKILLs, so until the first SIGKILL there are none, and no row is left `sending`.
    """
    if not outcome.killed:
        return
    if outcome.returncode is None:
        report.problems.append(f"`{kind}` did not stop within {STOP_GRACE_S:g}s of SIGTERM")
        return
    if outcome.returncode == -signal.SIGTERM:
        if last_run_id(store) != runs_before:
            report.problems.append(f"`{kind}` died of SIGTERM mid-work instead of stopping")
        report.terms_in_startup += 1
        return
    report.graceful_stops += 1
    if outcome.returncode not in EXPECTED_ON_SIGTERM[kind]:
        report.problems.append(f"`{kind}` exited {outcome.returncode} after SIGTERM")
    if report.sigkilled:
        return  # a SIGKILL'd sender's rows may still be `sending` or `unknown`: not ours
    left = store.count_by_status()
    for status in ("sending", "unknown"):
        if left.get(status):
            report.problems.append(f"`{kind}` left {left[status]} rows {status} after SIGTERM")


def move(sandbox: SandboxEnvironment, gen: OpportunityGenerator, moves: int) -> None:
    at = datetime.now(UTC) - timedelta(seconds=5)
    gen.advance(sandbox.salesforce.data, sandbox.opportunity_ids, moves, at)


def run_chaos(
    sandbox: SandboxEnvironment,
    state_url: str,
    workdir: Path,
    *,
    opportunities: int,
    kills: int,
    seed: int,
    latency_ms: float = 25,
    kill_window: tuple[float, float] = (0.8, 3.5),
    log: Callable[[str], None] = lambda _: None,
    naive: bool = False,
    commands: tuple[str, ...] = ("run",),
    signals: tuple[signal.Signals, ...] = (signal.SIGKILL,),
) -> ChaosReport:
    """`kills` interruptions of processes taking turns at `commands` (run, backfill, daemon),
    the CRM changing in between; then clean runs and `verify`.

    `signals` are used in phases, in order (SIGTERM then SIGKILL: the first half of the kills
    are SIGTERMs), so a graceful stop is checked before any SIGKILL has left rows behind.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    sandbox.salesforce.default_page_size = 200
    gen = sandbox.seed(count=opportunities, seed=seed, span=timedelta(hours=30))
    sandbox.ga4.set_faults(Faults(latency_ms=latency_ms))
    config = chaos_config(sandbox, state_url)
    report = ChaosReport()
    runs_log = workdir / "runs.log"
    day = datetime.now(UTC).date()
    window = ((day - timedelta(days=3)).isoformat(), (day + timedelta(days=2)).isoformat())
    store = StateStore.open(state_url)
    try:
        while report.kills < kills:
            if report.runs % 2 == 1:
                move(sandbox, gen, max(1, opportunities // 15))
            kind = commands[report.runs % len(commands)]
            runs_before = last_run_id(store)
            sig = signals[min(report.kills * len(signals) // kills, len(signals) - 1)]
            after = rng.uniform(*kill_window)
            at_work = None
            if sig == signal.SIGTERM:
                at_work = functools.partial(run_started, store, runs_before)
            outcome = ga4sync_run(
                config, runs_log, after, args=command_args(kind, window), sig=sig, at_work=at_work
            )
            report.runs += 1
            report.kills += outcome.killed
            if sig == signal.SIGTERM:
                check_graceful_stop(kind, outcome, store, report, runs_before)
            report.sigkilled |= outcome.killed and sig == signal.SIGKILL
            report.sigkills += outcome.killed and sig == signal.SIGKILL
            log(f"{kind} {report.runs}: {sig.name if outcome.killed else 'finished'}")
    finally:
        store.close()
    # Finish: clean runs until nothing is due or held by a dead sender's lease.
    store = StateStore.open(state_url)
    try:
        for _ in range(8):
            ga4sync_run(config, runs_log, None)
            report.runs += 1
            counts = store.count_by_status()
            if not any(counts.get(s) for s in ("pending", "retry", "sending")):
                break
            time.sleep(2.1)  # let the killed senders' leases run out
        verify(sandbox, store, config, report)
        if naive:
            report.naive_duplicates = naive_duplicates(sandbox, store, workdir, kills, seed)
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def verify(
    sandbox: SandboxEnvironment, store: StateStore, config: Path, report: ChaosReport
) -> None:
    """The promise, checked against what the CRM recorded and what GA4 received."""
    rows = store.list_outbox()
    captured = Counter(
        (r.record_id, r.to_value, r.changed_at.astimezone(UTC).replace(microsecond=0)) for r in rows
    )
    doubled = [k for k, n in captured.items() if n > 1]
    if doubled:
        report.problems.append(f"captured twice: {doubled[:3]}")
    expected = expected_transitions(sandbox)
    if set(captured) != expected:
        missing, extra = expected - set(captured), set(captured) - expected
        report.problems.append(f"lost {len(missing)} / extra {len(extra)} transitions")
    report.transitions = len(expected)
    counts = Counter(r.status for r in rows)
    report.sent, report.unknown, report.skipped = (
        counts["sent"],
        counts["unknown"],
        counts["skipped"],
    )
    if set(counts) - {"sent", "unknown", "skipped"}:
        report.problems.append(f"unsettled or unexpected statuses: {dict(counts)}")
    raw = Counter(fingerprint(e["client_id"], e) for e in sandbox.ga4.events())
    counted = Counter(fingerprint(e["client_id"], e) for e in sandbox.ga4.counted_events())
    report.ga4_events = sum(counted.values())
    report.raw_purchase_repeats = sum(raw.values()) - sum(counted.values())
    owned: set[str] = set()
    for r in rows:
        if not r.payload:
            continue
        payload = json.loads(r.payload)
        fp = fingerprint(payload["client_id"], payload["event"])
        owned.add(fp)
        n = counted[fp]
        if r.status == "sent" and n != 1:
            report.problems.append(f"{r.key[:12]} is sent but GA4 counted it {n} times")
        elif r.status == "unknown" and n > 1:
            report.problems.append(f"{r.key[:12]} is unknown but GA4 counted it {n} times")
        elif r.status == "unknown":
            report.unknown_in_ga4 += n
            report.unknown_not_in_ga4 += 1 - n
        elif r.status not in ("sent", "unknown") and n:
            report.problems.append(f"{r.key[:12]} is {r.status} but GA4 has it")
    unknown_fps = {
        fingerprint(json.loads(r.payload)["client_id"], json.loads(r.payload)["event"])
        for r in rows
        if r.status == "unknown" and r.payload
    }
    report.unknown_requests_in_ga4 = sum(
        1
        for hit in sandbox.ga4.hits
        if any(fingerprint(hit.body.get("client_id"), e) in unknown_fps for e in hit.body["events"])
    )
    report.killed_in_capture = sum(1 for run in store.last_runs(10_000) if run.status == "running")
    strays = set(counted) - owned
    if strays:
        report.problems.append(f"GA4 has {len(strays)} events no outbox row explains")
    listed = CliRunner().invoke(
        main,
        ["--config", str(config), "outbox", "list", "--status", "unknown", "--format", "json"],
    )
    listed_keys = {r["key"] for r in json.loads(listed.output)} if listed.exit_code == 0 else set()
    unknown_keys = {r.key for r in rows if r.status == "unknown"}
    if listed_keys != unknown_keys:
        report.problems.append(
            f"`outbox list --status unknown` shows {len(listed_keys)} rows, store has "
            f"{len(unknown_keys)}"
        )


NAIVE_SENDER = """
import sqlite3, sys, requests
db = sqlite3.connect(sys.argv[1])
for key, body in db.execute("SELECT key, body FROM naive WHERE sent = 0 ORDER BY key").fetchall():
    requests.post(sys.argv[2], data=body, timeout=5)
    db.execute("UPDATE naive SET sent = 1 WHERE key = ?", (key,))
    db.commit()
"""
"""The tutorial sender: post, then mark sent, one row at a time; after a crash, send whatever
is not marked. Kept to plain sqlite3 + requests so its start-up is fast."""


def naive_duplicates(
    sandbox: SandboxEnvironment, store: StateStore, workdir: Path, kills: int, seed: int
) -> int:
    """Replay the same events through the naive sender under the same kind of kill schedule;
    returns how many events GA4 received more than once."""
    import sqlite3

    from ga4sync.ga4.payload import request_body
    from ga4sync.sandbox.runner import GA4_SECRET, MEASUREMENT_ID

    db_path = workdir / "naive.db"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE naive (key TEXT PRIMARY KEY, body TEXT, sent INTEGER)")
    for r in store.list_outbox(statuses=["sent", "unknown"]):
        if r.payload is None:
            continue  # never: a sent or unknown row carries the payload it went with
        body = json.dumps(request_body([json.loads(r.payload)]))
        db.execute("INSERT INTO naive VALUES (?, ?, 0)", (r.key, body))
    db.commit()
    db.close()
    sandbox.ga4.reset()
    query = f"measurement_id={MEASUREMENT_ID}&api_secret={GA4_SECRET}"
    url = f"{sandbox.ga4_server.url}/mp/collect?{query}"
    rng = random.Random(seed)
    done = 0
    while done < kills + 20:
        proc = subprocess.Popen([sys.executable, "-c", NAIVE_SENDER, str(db_path), url])
        try:
            proc.wait(timeout=rng.uniform(0.3, 2.5) if done < kills else 300)
            if done >= kills:
                break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        done += 1
    raw = Counter(fingerprint(e["client_id"], e) for e in sandbox.ga4.events())
    return sum(raw.values()) - len(raw)


def pg_url() -> tuple[str, Callable[[], None]]:
    schema = f"chaos_{random.randrange(16**8):08x}"
    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--opportunities", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--commands", default="run", help="Comma-separated, taking turns: run,backfill,daemon"
    )
    parser.add_argument(
        "--signals", default="SIGKILL", help="Comma-separated phases, e.g. SIGTERM,SIGKILL"
    )
    args = parser.parse_args()
    commands = tuple(c.strip() for c in args.commands.split(","))
    signals = tuple(signal.Signals[s.strip().upper()] for s in args.signals.split(","))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    totals: dict[str, int] = Counter()
    problems: list[str] = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            drop: Callable[[], None] = lambda: None  # noqa: E731
            url = f"sqlite:///{workdir / 'state.db'}"
            if backend == "postgresql":
                url, drop = pg_url()
            with SandboxEnvironment(workdir / "sandbox") as sandbox:
                try:
                    rep = run_chaos(
                        sandbox,
                        url,
                        workdir,
                        opportunities=args.opportunities,
                        kills=args.kills,
                        seed=args.seed,
                        naive=True,
                        commands=commands,
                        signals=signals,
                    )
                finally:
                    drop()
            print(
                f"{backend}: {rep.runs} runs, {rep.kills} kills ({rep.graceful_stops} graceful "
                f"SIGTERM stops), {rep.transitions} "
                f"transitions, sent {rep.sent}, unknown {rep.unknown}, skipped {rep.skipped}, "
                f"GA4 counted {rep.ga4_events} (+{rep.raw_purchase_repeats} purchase "
                f"repeats GA4 dedups), {rep.seconds:.1f}s; killed mid-capture "
                f"{rep.killed_in_capture}, between claim and send {rep.unknown_not_in_ga4} "
                f"rows, between send and "
                f"commit {rep.unknown_in_ga4} rows; naive sender under the same kills: "
                f"{rep.naive_duplicates} duplicates; {rep.sigkills} SIGKILLs left "
                f"{rep.unknown} unknown rows, GA4 got {rep.unknown_requests_in_ga4} requests "
                f"({rep.unknown_in_ga4} rows) of them"
            )
            for p in rep.problems:
                print(f"  PROBLEM: {p}")
            problems += rep.problems
            totals["kills"] += rep.kills
            totals["transitions"] += rep.transitions
            totals["unknown"] += rep.unknown
            totals["sent"] += rep.sent
            totals["naive_dups"] += rep.naive_duplicates
            totals["sigkills"] += rep.sigkills
            totals["in_flight_requests"] += rep.unknown_requests_in_ga4
            totals["in_flight_rows"] += rep.unknown_in_ga4
            totals["unknown_never_sent"] += rep.unknown_not_in_ga4
    print(
        result_line(
            kills=totals["kills"],
            transitions=totals["transitions"],
            sent=totals["sent"],
            duplicates=0 if not problems else -1,
            unknown=totals["unknown"],
            unknown_per_kill=totals["unknown"] / max(totals["sigkills"], 1),
            in_flight_requests_per_kill=totals["in_flight_requests"] / max(totals["sigkills"], 1),
            in_flight_rows_per_kill=totals["in_flight_rows"] / max(totals["sigkills"], 1),
            unknown_never_sent=totals["unknown_never_sent"],
            naive_duplicates=totals["naive_dups"],
            problems=len(problems),
        )
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main_cli()
