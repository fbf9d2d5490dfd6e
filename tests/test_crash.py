"""SIGKILL/SIGTERM `ga4sync run|backfill|daemon` at random points, restart until done:
nothing lost, nothing doubled, and a SIGTERM is a clean stop.

The harness lives in bench/chaos.py (`python -m bench.chaos` runs it much longer); here it runs
a few kills per backend. Kills land during start-up, capture (200-row CRM pages), between claim
and send, and between send and commit (25 ms GA4 latency widens those windows).
"""

from __future__ import annotations

import signal
from pathlib import Path

from ga4sync.sandbox.runner import SandboxEnvironment

from bench.chaos import run_chaos


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
    daemon and a backfill. GA4 latency is high so the signals land mid-delivery."""
    report = run_chaos(
        sandbox,
        state_url,
        tmp_path,
        opportunities=90,
        kills=4,
        seed=5,
        latency_ms=150,
        kill_window=(2.2, 4.0),
        commands=("backfill", "run", "daemon"),
        signals=(signal.SIGTERM, signal.SIGKILL),
    )
    assert report.kills == 4
    assert report.problems == []
    assert report.graceful_stops >= 1
    assert report.sent > 0 and report.transitions > 90
