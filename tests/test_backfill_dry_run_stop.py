"""`ga4sync backfill --dry-run` stopped by Ctrl-C or SIGTERM while it reads the CRM exits 130,
as docs/deploy.md says an interrupted backfill does (it printed click's bare `Aborted!` and
exited 1 on Ctrl-C, and SIGTERM ended it with Python's default -15), and writes nothing."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ga4sync.sandbox.runner import SandboxEnvironment

from bench.chaos import chaos_config
from tests.pipelined_support import WAIT_S, PageGate
from tests.test_pipelined_stop import Ga4sync


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_dry_run_exits_130_and_writes_nothing(
    sandbox: SandboxEnvironment, tmp_path: Path, sig: signal.Signals
) -> None:
    sandbox.seed(count=300, seed=31, span=timedelta(hours=60))
    db = tmp_path / "state.db"
    config = chaos_config(sandbox, f"sqlite:///{db}")
    now = datetime.now(UTC)
    start = (now - timedelta(days=4)).date().isoformat()
    end = (now + timedelta(days=1)).date().isoformat()
    gate = PageGate(sandbox)  # the dry run's second page waits
    args = ["backfill", "--connector", "salesforce", "--from", start, "--to", end, "--dry-run"]
    proc = Ga4sync(config, args, tmp_path / "dry.log")
    try:
        assert gate.holding.wait(WAIT_S), proc.output()
        proc.proc.send_signal(sig)
        rc = proc.proc.wait(timeout=WAIT_S)
    finally:
        gate.open()
        proc.kill()
    output = proc.output()
    assert rc == 130, output
    assert "interrupted" in output
    assert "Aborted!" not in output and "Traceback" not in output
    assert not db.exists()  # a dry run writes nothing, stopped or not


def test_a_second_ctrl_c_aborts_a_backfill_with_130_and_nothing_sent_twice(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """docs/deploy.md: a second Ctrl-C aborts at once (safe: rows in flight become `unknown`);
    the exit code is still the interrupted one, 130, not click's `Aborted!` 1."""
    sandbox.seed(count=300, seed=31, span=timedelta(hours=60))
    db = tmp_path / "state.db"
    config = chaos_config(sandbox, f"sqlite:///{db}")
    now = datetime.now(UTC)
    start = (now - timedelta(days=4)).date().isoformat()
    end = (now + timedelta(days=1)).date().isoformat()
    gate = PageGate(sandbox)
    args = ["backfill", "--connector", "salesforce", "--from", start, "--to", end]
    proc = Ga4sync(config, args, tmp_path / "abort.log")
    try:
        assert gate.holding.wait(WAIT_S), proc.output()
        proc.proc.send_signal(signal.SIGINT)
        deadline = datetime.now(UTC) + timedelta(seconds=WAIT_S)
        while "SIGINT: stopping" not in proc.output() and datetime.now(UTC) < deadline:
            proc.proc.poll()
        proc.proc.send_signal(signal.SIGINT)
        gate.open()
        rc = proc.proc.wait(timeout=WAIT_S)
    finally:
        gate.open()
        proc.kill()
    output = proc.output()
    assert rc == 130, output
    assert "Aborted!" not in output and "Traceback" not in output
    assert "run the same command again" in output
    events = [e for hit in sandbox.ga4.hits for e in hit.body["events"]]
    assert len(events) == len({(e["name"], e.get("timestamp_micros")) for e in events})
