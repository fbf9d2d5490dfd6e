"""SIGKILL/SIGTERM `ga4sync run|backfill|daemon` at random points, restart until done:
nothing lost, nothing doubled, and a SIGTERM is a clean stop.

The harness lives in bench/chaos.py (`python -m bench.chaos` runs it much longer); here it runs
a few kills per backend. Kills land during start-up, capture (200-row CRM pages), between claim
and send, and between send and commit (25 ms GA4 latency widens those windows).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from bench.chaos import ROOT, chaos_config, fingerprint, ga4sync_run, run_chaos


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    report = run_chaos(sandbox, state_url, tmp_path, opportunities=90, kills=6, seed=4)
    assert report.kills == 6
    assert report.problems == []
    assert report.sent > 0 and report.transitions > 90


def test_sigterm_stops_run_backfill_and_daemon_cleanly_and_sigkill_loses_nothing(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    """SIGTERMs first (a backfill, a run, a daemon mid-work): each exits with its documented
    code (0; backfill 130) and leaves no row `sending` or `unknown`. Then SIGKILLs of the
    daemon and a backfill. GA4 latency is high so the signals land mid-delivery; a SIGTERM
    window counts from the moment the process opened its run, so a slow start-up on a loaded
    machine cannot swallow it."""
    report = run_chaos(
        sandbox,
        state_url,
        tmp_path,
        opportunities=90,
        kills=4,
        seed=5,
        latency_ms=150,
        kill_window=(0.5, 2.5),
        commands=("backfill", "run", "daemon"),
        signals=(signal.SIGTERM, signal.SIGKILL),
    )
    assert report.kills == 4
    assert report.problems == []
    assert report.graceful_stops >= 1
    assert report.sent > 0 and report.transitions > 90


def test_after_a_sigkill_only_requests_really_in_flight_are_unknown(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    """GA4 holds every request 3 s; `run` is killed once GA4 has two requests (its two
    workers). Rows claimed with them but not yet sent go back to `pending` and are sent once
    by the next run; `unknown` is exactly the rows of the two requests GA4 received."""
    sandbox.seed(count=60, seed=3, span=timedelta(hours=30))
    sandbox.ga4.set_faults(Faults(latency_ms=3000))
    config = chaos_config(sandbox, state_url)
    log = tmp_path / "runs.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ga4sync", "--config", str(config), "run"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while sandbox.ga4.requests < 2 and proc.poll() is None:
                assert time.monotonic() < deadline, "ga4sync never sent two requests"
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    in_flight = [
        fingerprint(hit.body["client_id"], e)
        for hit in sandbox.ga4.hits
        for e in hit.body["events"]
    ]
    assert len(sandbox.ga4.hits) == 2 and in_flight
    sandbox.ga4.set_faults(Faults())
    time.sleep(2.1)  # the killed run's lease (2 s) runs out
    assert ga4sync_run(config, log, None).returncode == 0
    store = StateStore.open(state_url)
    try:
        rows = store.list_outbox()
    finally:
        store.close()
    by_fp = {
        fingerprint(json.loads(r.payload)["client_id"], json.loads(r.payload)["event"]): r
        for r in rows
        if r.payload
    }
    unknown = {fp for fp, r in by_fp.items() if r.status == "unknown"}
    # A purchase with a transaction_id is resent instead (GA4 deduplicates it).
    resent = {fp for fp in in_flight if by_fp[fp].resend_if_unknown}
    assert unknown == set(in_flight) - resent
    assert all(by_fp[fp].status == "sent" for fp in resent)
    statuses = Counter(r.status for r in rows)
    assert set(statuses) <= {"sent", "unknown", "skipped"} and statuses["sent"] > 10
    counted = Counter(fingerprint(e["client_id"], e) for e in sandbox.ga4.counted_events())
    assert max(counted.values()) == 1
