"""`ga4sync daemon` as a real process against the sandbox: scheduled runs, SIGTERM, restart.

The sandbox Salesforce and GA4 run in this process; the daemon is a subprocess with a 1 s
schedule, so each test sees several scheduled runs while records move. At the end every stage
change the sandbox recorded is in the outbox exactly once, every row is settled, and GA4 saw
each sent event once.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.mapping.load import load_mapping
from ga4sync.ops.daemon import schedule_for
from ga4sync.pipeline.config import load_config
from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.generator import OpportunityGenerator
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.sandbox.salesforce import SERVER_UNAVAILABLE
from ga4sync.state.store import StateStore

from bench.chaos import expected_transitions

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_config(sandbox: SandboxEnvironment, state_url: str, *, workers: int = 4) -> Path:
    path = sandbox.write_config(state_url=state_url)
    doc = yaml.safe_load(path.read_text())
    doc["connectors"][0]["every"] = "1s"
    doc["ga4"]["workers"] = workers
    doc["ga4"]["max_workers"] = workers  # fixed: the SIGTERM test counts on a slow delivery
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class DaemonProcess:
    """`python -m sync.cli daemon` with JSON logs, and its HTTP port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self._log = log.open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ga4sync",
                "--config",
                str(config),
                "--log-level",
                "INFO",
                "--log-format",
                "json",
                "daemon",
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        d = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log")
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(store: StateStore) -> Counter[str]:
    return Counter(store.count_by_status())


def settled(store: StateStore) -> bool:
    counts = store.count_by_status()
    return not any(counts.get(s) for s in ("pending", "sending", "retry"))


def assert_nothing_lost_or_doubled(sandbox: SandboxEnvironment, store: StateStore) -> None:
    rows = store.list_outbox()
    captured = {
        (r.record_id, r.to_value, r.changed_at.astimezone(UTC).replace(microsecond=0)) for r in rows
    }
    assert len(captured) == len(rows), "a transition was captured twice"
    assert captured == expected_transitions(sandbox), "a stage change is missing or extra"
    counts = statuses(store)
    assert set(counts) <= {"sent", "skipped"}, counts
    events = sandbox.ga4.events()
    assert len(events) == counts["sent"]
    seen = Counter(
        (e["client_id"], e["name"], e["timestamp_micros"], json.dumps(e["params"], sort_keys=True))
        for e in events
    )
    assert max(seen.values()) == 1, "GA4 received an event twice"


def move(sandbox: SandboxEnvironment, gen: OpportunityGenerator, moves: int) -> int:
    at = datetime.now(UTC) - timedelta(seconds=5)
    return len(gen.advance(sandbox.salesforce.data, sandbox.opportunity_ids, moves, at))


def test_daemon_runs_on_schedule_stops_on_sigterm_and_resumes(
    sandbox: SandboxEnvironment,
    state_url: str,
    daemons: Callable[[Path], DaemonProcess],
) -> None:
    gen = sandbox.seed(count=80, seed=11)
    config = daemon_config(sandbox, state_url, workers=2)
    store = StateStore.open(state_url)
    try:
        first = daemons(config)
        wait_for("the first run", lambda: settled(store) and statuses(store)["sent"] > 0)
        wait_for("/healthz", lambda: first.get("/healthz").status_code == 200)
        health = first.get("/healthz").json()
        assert health["status"] == "ok"
        assert [c["connector"] for c in health["connectors"]] == ["salesforce"]
        assert health["connectors"][0]["last_success"] is not None

        # Later scheduled runs pick up records that move while the daemon runs.
        sent_before = statuses(store)["sent"]
        assert move(sandbox, gen, 8) > 0
        wait_for("a later run", lambda: settled(store) and statuses(store)["sent"] > sent_before)
        metrics = first.get("/metrics").text
        sent_metric = [
            line
            for line in metrics.splitlines()
            if line.startswith("ga4sync_events_total{") and 'outcome="sent"' in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in sent_metric) == len(
            sandbox.ga4.events()
        )
        for name in (
            "ga4sync_transitions_captured_total",
            "ga4sync_crm_api_calls_total",
            "ga4sync_ga4_request_seconds_bucket",
            "ga4sync_freshness_seconds_bucket",
            "ga4sync_events_by_window_total",
        ):
            assert f"{name}{{" in metrics, name

        # SIGTERM while a slow GA4 is mid-delivery: the batch in flight is settled, exit 0.
        sandbox.ga4.set_faults(Faults(latency_ms=300))
        hits_before = len(sandbox.ga4.events())
        assert move(sandbox, gen, 40) > 0
        wait_for("delivery to start", lambda: len(sandbox.ga4.events()) > hits_before + 1)
        assert first.stop() == 0
        counts = statuses(store)
        assert not counts.get("sending") and not counts.get("unknown"), counts
        assert counts["pending"] > 0, "SIGTERM should have come mid-delivery"
        lines = first.log_lines()
        assert any("SIGTERM" in str(line["message"]) for line in lines)
        runs = [
            line
            for line in lines
            if line.get("logger") == "ga4sync.ops.daemon" and "GA4 sent" in str(line["message"])
        ]
        assert len(runs) >= 3 and all(line["connector"] == "salesforce" for line in runs)

        # Restart: the rest goes out; more moves are picked up; nothing is sent twice.
        sandbox.ga4.set_faults(Faults())
        second = daemons(config)
        move(sandbox, gen, 5)
        wait_for(
            "the restarted daemon to catch up",
            lambda: (
                settled(store) and len(store.list_outbox()) == len(expected_transitions(sandbox))
            ),
        )
        # The CRM is down for several runs: the daemon goes on, /healthz turns 503 after 3
        # intervals, `status` shows the CRM's error; once it is back, the moves made during
        # the outage are picked up (the watermark did not move past them).
        for _ in range(500):
            sandbox.salesforce.fail(SERVER_UNAVAILABLE)
        assert move(sandbox, gen, 3) > 0
        wait_for("/healthz to fail", lambda: second.get("/healthz").status_code == 503)
        assert second.get("/healthz").json()["stale"] == ["salesforce"]
        assert second.proc.poll() is None

        def last_run() -> dict[str, Any]:
            shown = CliRunner().invoke(
                main, ["--config", str(config), "status", "--format", "json"]
            )
            run: dict[str, Any] = json.loads(shown.output)["connectors"][0]["last_run"]
            return run

        # The daemon keeps trying while the CRM is down: status may catch a run in progress.
        finished: list[dict[str, Any]] = []

        def a_finished_run() -> bool:
            run = last_run()
            if run["result"] == "running":
                return False
            finished.append(run)
            return True

        wait_for("a finished run in status", a_finished_run, 120)
        assert finished[-1]["result"] == "failed", finished[-1]
        assert "SERVER_UNAVAILABLE" in finished[-1]["error"]
        sandbox.salesforce.faults.clear()
        wait_for("/healthz to recover", lambda: second.get("/healthz").status_code == 200)
        wait_for(
            "the outage's moves",
            lambda: (
                settled(store) and len(store.list_outbox()) == len(expected_transitions(sandbox))
            ),
        )

        assert second.stop() == 0
        assert_nothing_lost_or_doubled(sandbox, store)
    finally:
        store.close()


def test_backfill_beside_a_running_daemon_sends_nothing_twice(
    sandbox: SandboxEnvironment,
    state_url: str,
    daemons: Callable[[Path], DaemonProcess],
) -> None:
    gen = sandbox.seed(count=60, seed=5)
    config = daemon_config(sandbox, state_url)
    store = StateStore.open(state_url)
    try:
        daemon = daemons(config)
        wait_for("the daemon's first run", lambda: statuses(store)["sent"] > 0)
        move(sandbox, gen, 10)
        start = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
        end = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        args = ["--config", str(config), "backfill", "--connector", "salesforce"]
        result = CliRunner().invoke(main, [*args, "--from", start, "--to", end])
        assert result.exit_code == 0, result.output
        move(sandbox, gen, 10)
        again = CliRunner().invoke(main, [*args, "--from", start, "--to", end])
        assert again.exit_code == 0, again.output
        wait_for(
            "the daemon to settle",
            lambda: (
                settled(store) and len(store.list_outbox()) == len(expected_transitions(sandbox))
            ),
        )
        assert daemon.stop() == 0
        assert_nothing_lost_or_doubled(sandbox, store)
        # The daemon's watermark is its own; the backfill's lives in its scope.
        scopes = {r.scope for r in store.list_outbox()}
        assert "daemon" in scopes
    finally:
        store.close()


def test_deploy_examples_load_and_schedule(tmp_path: Path) -> None:
    """The ConfigMap's config and mapping are valid, and the manifests parse."""
    k8s = ROOT / "deploy" / "k8s"
    configmap = yaml.safe_load((k8s / "configmap.yaml").read_text())
    (tmp_path / "mappings").mkdir()
    (tmp_path / "ga4sync.yaml").write_text(configmap["data"]["ga4sync.yaml"])
    mapping = tmp_path / "mappings" / "salesforce_opportunity.yaml"
    mapping.write_text(configmap["data"]["salesforce_opportunity.yaml"])
    config = load_config(tmp_path / "ga4sync.yaml")
    assert [schedule_for(c).interval for c in config.connectors] == [timedelta(minutes=5)]
    assert load_mapping(str(config.resolve(config.connectors[0].mapping))).model.rules
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in k8s.glob("*.yaml")}
    assert kinds == {"ConfigMap", "Secret", "Deployment", "CronJob"}
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["daemon", "--http-port", "9108"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_a_port_in_use_is_a_clean_error_for_daemon_and_sandbox(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    config = daemon_config(sandbox, state_url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        daemon = CliRunner().invoke(
            main,
            ["--config", str(config), "daemon", "--http-host", "127.0.0.1", "--http-port", port],
        )
        assert daemon.exit_code == 2, daemon.output
        assert f"--http-port {port}: cannot listen" in daemon.output
        assert "Traceback" not in daemon.output
        served = CliRunner().invoke(
            main, ["sandbox", "--port-ga4", port, "--dir", str(tmp_path / "sb")]
        )
        assert served.exit_code == 2, served.output
        assert "already in use" in served.output and "Traceback" not in served.output
    assert sandbox.ga4.events() == []
