"""SIGKILL `ga4sync run` at random points, restart until done: nothing lost, nothing doubled.

The harness lives in bench/chaos.py (`python -m bench.chaos` runs it much longer); here it runs
a few kills per backend. Kills land during start-up, capture (200-row CRM pages), between claim
and send, and between send and commit (25 ms GA4 latency widens those windows).
"""

from __future__ import annotations

from pathlib import Path

from bench.chaos import run_chaos
from sandbox.runner import SandboxEnvironment


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    report = run_chaos(sandbox, state_url, tmp_path, opportunities=90, kills=6, seed=4)
    assert report.kills == 6
    assert report.problems == []
    assert report.sent > 0 and report.transitions > 90
