"""`ga4sync run`, `backfill` and `daemon`, stopped between a committed page and its delivery
(SIGTERM, and SIGKILL of the process), then run again: every captured row reaches GA4, none
twice (both state backends, the Salesforce and GA4 sandboxes over HTTP(S)).

The signal is sent from the GA4 sandbox when the first request has arrived, before GA4 answers
it, while the Salesforce sandbox holds the capture's next page: the first page is committed,
one request of it is in flight (one GA4 worker), the rest of it is claimed or waiting.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from bench.chaos import (
    EXPECTED_ON_SIGTERM,
    ROOT,
    ChaosReport,
    chaos_config,
    expected_transitions,
    verify,
)
from tests.pipelined_support import WAIT_S, BeforeFirstSend, PageGate
from tests.test_daemon import settled, wait_for

RESTARTS = 10
"""Runs after the stop until everything is settled; after a SIGKILL the first ones may find
the killed sender's rows still under their 2 s lease."""


def command(kind: str) -> list[str]:
    if kind != "backfill":
        return [kind]
    now = datetime.now(UTC)
    start = (now - timedelta(days=4)).date().isoformat()
    end = (now + timedelta(days=1)).date().isoformat()
    return ["backfill", "--connector", "salesforce", "--from", start, "--to", end]


def stop_config(sandbox: SandboxEnvironment, state_url: str, kind: str) -> Path:
    """One GA4 worker, so exactly one request is in flight when the signal is sent."""
    path = chaos_config(sandbox, state_url)
    doc = yaml.safe_load(path.read_text())
    doc["ga4"]["workers"] = 1
    if kind == "daemon":
        doc["connectors"][0]["every"] = "1s"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Ga4sync:
    """One ga4sync subprocess with its output in a log file."""

    def __init__(self, config: Path, args: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ga4sync", "--config", str(config), *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 2 * WAIT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def processes() -> Iterator[list[Ga4sync]]:
    started: list[Ga4sync] = []
    yield started
    for p in started:
        p.kill()


def finish(
    kind: str,
    config: Path,
    store: StateStore,
    expected: int,
    tmp_path: Path,
    processes: list[Ga4sync],
) -> list[str]:
    """Run again until every transition is captured and settled; the outputs, for failures."""

    def done() -> bool:
        return settled(store) and len(store.list_outbox()) == expected

    outputs: list[str] = []
    if kind == "daemon":
        daemon = Ga4sync(config, ["daemon"], tmp_path / "restart.log")
        processes.append(daemon)
        wait_for("the restarted daemon to deliver the rest", done, timeout=2 * WAIT_S)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()
        return [daemon.output()]
    for attempt in range(RESTARTS):
        again = Ga4sync(config, command(kind), tmp_path / f"again-{attempt}.log")
        processes.append(again)
        rc = again.wait()
        outputs.append(f"rc={rc}\n{again.output()}")
        assert "Traceback" not in outputs[-1], outputs[-1]
        if done():
            return outputs
        time.sleep(1.0)  # the killed sender's lease (2 s) has not run out yet
    raise AssertionError("not finished after restarts:\n" + "\n---\n".join(outputs))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize("kind", ["run", "backfill", "daemon"])
def test_stopped_between_a_page_and_its_delivery_then_run_again(
    sandbox: SandboxEnvironment,
    state_url: str,
    tmp_path: Path,
    processes: list[Ga4sync],
    kind: str,
    sig: signal.Signals,
) -> None:
    sandbox.seed(count=150, seed=31, span=timedelta(hours=60))
    config = stop_config(sandbox, state_url, kind)
    expected = len(expected_transitions(sandbox))
    gate = PageGate(sandbox)  # the capture's second page waits
    first = Ga4sync(config, command(kind), tmp_path / "first.log")
    processes.append(first)
    held_at_signal: list[int] = []

    def stop() -> None:
        """On GA4's thread, with the first request received and not answered."""
        # The capture asks for its next page whatever delivery does: wait for that, so the
        # signal lands with page 1 committed, page 2 held and page 1's first request here.
        gate.holding.wait(WAIT_S)
        with gate.lock:
            held_at_signal.append(gate.waiting)
        first.proc.send_signal(sig)
        if sig == signal.SIGTERM:  # the stop is set before the held page comes back
            deadline = time.monotonic() + WAIT_S
            while "SIGTERM" not in first.output() and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            first.proc.wait()
        gate.open()

    sending = BeforeFirstSend(sandbox, stop)
    rc = first.wait()
    assert sending.fired.is_set(), first.output()
    assert held_at_signal == [1], "the signal should come while the capture was paging"
    store = StateStore.open(state_url)
    try:
        left = store.count_by_status()
        assert 0 < len(store.list_outbox()) < expected, "the capture should have stopped"
        if sig == signal.SIGTERM:
            assert rc in EXPECTED_ON_SIGTERM[kind], first.output()
            # The requests claimed before the stop were sent and settled; the rest waits.
            assert not left.get("sending") and not left.get("unknown"), left
            assert left.get("pending", 0) > 0, left
        else:
            assert rc == -signal.SIGKILL
            assert len(sandbox.ga4.hits) == 1  # one worker: one request was in flight

        outputs = finish(kind, config, store, expected, tmp_path, processes)
        report = ChaosReport()
        verify(sandbox, store, config, report)
        assert report.problems == [], outputs
        # Nothing lost: a row is `unknown` only if its request reached GA4 (SIGKILL).
        assert report.unknown_not_in_ga4 == 0
        assert report.unknown_requests_in_ga4 <= 1
        if sig == signal.SIGTERM:
            assert report.unknown == 0 and report.raw_purchase_repeats == 0
        assert report.sent > 0
    finally:
        store.close()
