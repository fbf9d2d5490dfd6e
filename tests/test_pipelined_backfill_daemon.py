"""`ga4sync backfill` and a `ga4sync daemon` tick deliver while their capture is still paging
(both state backends, the Salesforce and GA4 sandboxes over HTTP(S)).

The Salesforce sandbox holds the capture's next page until GA4 has recorded an event
(tests/pipelined_support.py): only a delivery that starts on the first committed page lets the
capture go on; one that waited for the whole capture would leave the page held until timeout.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from bench.chaos import ChaosReport, expected_transitions, verify
from tests.pipelined_support import WAIT_S, hold_pages_until_first_event
from tests.test_daemon import DaemonProcess, settled, wait_for


def paged_config(sandbox: SandboxEnvironment, state_url: str, *, every: str | None = None) -> Path:
    """Pages of 200 history rows, so the seeded org is read in several pages."""
    path = sandbox.write_config(state_url=state_url)
    doc = yaml.safe_load(path.read_text())
    doc["connectors"][0]["page_size"] = 200
    if every is not None:
        doc["connectors"][0]["every"] = every
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def assert_sent_once_and_nothing_lost(
    sandbox: SandboxEnvironment, store: StateStore, config: Path
) -> None:
    report = ChaosReport()
    verify(sandbox, store, config, report)  # every transition once; GA4 has each sent row once
    assert report.problems == []
    assert report.unknown == 0 and report.raw_purchase_repeats == 0
    assert report.sent == len(sandbox.ga4.events()) > 0


def test_backfill_sends_the_first_event_before_its_capture_finished(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    sandbox.seed(count=150, seed=21, span=timedelta(hours=60))
    config = paged_config(sandbox, state_url)
    gate, first = hold_pages_until_first_event(sandbox)
    now = datetime.now(UTC)
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(config),
            "backfill",
            "--connector",
            "salesforce",
            "--from",
            (now - timedelta(days=4)).date().isoformat(),
            "--to",
            (now + timedelta(days=1)).date().isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    assert not gate.timed_out, f"GA4 got nothing within {WAIT_S:g}s while a page was held"
    assert gate.held >= 1, "the backfill read one page only: the test proved nothing"
    assert first.pages_waiting, "GA4's first event came after the capture had finished"
    store = StateStore.open(state_url)
    try:
        assert settled(store)
        assert_sent_once_and_nothing_lost(sandbox, store, config)
    finally:
        store.close()


def test_a_daemon_tick_sends_the_first_event_before_its_capture_finished(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    sandbox.seed(count=150, seed=22, span=timedelta(hours=60))
    config = paged_config(sandbox, state_url, every="1s")
    gate, first = hold_pages_until_first_event(sandbox)
    expected = len(expected_transitions(sandbox))
    store = StateStore.open(state_url)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_for(
            "the first tick to capture and deliver everything",
            lambda: settled(store) and len(store.list_outbox()) == expected,
            timeout=2 * WAIT_S,
        )
        assert daemon.stop(signal.SIGTERM) == 0
        assert not gate.timed_out, f"GA4 got nothing within {WAIT_S:g}s while a page was held"
        assert gate.held >= 1, "the tick read one page only: the test proved nothing"
        assert first.pages_waiting, "GA4's first event came after the capture had finished"
        assert_sent_once_and_nothing_lost(sandbox, store, config)
    finally:
        daemon.kill()
        store.close()
