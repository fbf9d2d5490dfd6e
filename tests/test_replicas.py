"""Replicas and a database that goes away: two daemons on one store over many polls of a
changing CRM, and PostgreSQL connections terminated mid-run. Zero duplicates, zero lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from bench.chaos import ChaosReport, chaos_config, expected_transitions, verify
from tests.conftest import PG_BASE

ROOT = Path(__file__).resolve().parent.parent


def settled(store: StateStore) -> bool:
    counts = store.count_by_status()
    return not any(counts.get(s) for s in ("pending", "retry", "sending"))


def wait_for(what: str, check: object, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_daemons_share_one_store_without_duplicates_or_losses(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    gen = sandbox.seed(count=60, seed=21)
    sandbox.ga4.set_faults(Faults(latency_ms=15))
    config = chaos_config(sandbox, state_url, lease="30s")
    doc = yaml.safe_load(config.read_text())
    doc["connectors"][0]["every"] = "1s"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    cmd = [sys.executable, "-m", "ga4sync", "--config", str(config), "daemon"]
    logs = [(tmp_path / f"replica{i}.log").open("w") for i in range(2)]
    replicas = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) for log in logs
    ]
    store = StateStore.open(state_url)
    try:
        for _ in range(12):  # many polls of a CRM that keeps changing
            time.sleep(0.7)
            at = datetime.now(UTC) - timedelta(seconds=3)
            gen.advance(sandbox.salesforce.data, sandbox.opportunity_ids, 4, at)
        expected = len(expected_transitions(sandbox))
        wait_for(
            "every move captured and delivered",
            lambda: settled(store) and sum(store.count_by_status().values()) >= expected,
        )
        time.sleep(2.5)  # a few more polls: nothing new may appear
        for proc in replicas:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in replicas] == [0, 0]
        report = ChaosReport()
        verify(sandbox, store, config, report)
        assert report.problems == []
        assert report.unknown == 0, "a clean shutdown must leave nothing unknown"
        assert report.sent > 0 and len(store.last_runs(200)) >= 4
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        store.close()


def terminate_backends(app: str) -> int:
    engine = sa.create_engine(PG_BASE)
    try:
        with engine.begin() as conn:
            return len(
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :app AND pid <> pg_backend_pid()"
                    ),
                    {"app": app},
                ).all()
            )
    finally:
        engine.dispose()


def test_postgres_connections_dropped_mid_run(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    app = f"ga4sync_victim_{uuid.uuid4().hex[:12]}"
    sandbox.salesforce.default_page_size = 200
    sandbox.seed(count=120, seed=8)
    sandbox.ga4.set_faults(Faults(latency_ms=30))
    config = chaos_config(sandbox, f"{state_url}&application_name={app}")
    cmd = [sys.executable, "-m", "ga4sync", "--config", str(config), "run"]
    terminated = 0
    out = tmp_path / "run.log"
    with out.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        stop = threading.Event()

        def terminator() -> None:
            nonlocal terminated
            time.sleep(1.2)
            while not stop.is_set() and proc.poll() is None:
                terminated += terminate_backends(app)
                time.sleep(0.5)

        thread = threading.Thread(target=terminator)
        thread.start()
        rc = proc.wait(timeout=120)
        stop.set()
        thread.join()
    output = out.read_text()
    assert terminated > 0, "no connection was terminated; the test proved nothing\n" + output
    assert rc in (0, 1), output
    assert "Traceback" not in output, output

    store = StateStore.open(state_url)
    try:
        later: list[str] = []
        for _ in range(5):  # clean runs finish the work; killed claims turn unknown
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
            later.append(f"rc={done.returncode}\n{done.stdout}{done.stderr}")
            if done.returncode == 0 and settled(store):
                break
            time.sleep(2.1)
        report = ChaosReport()
        verify(sandbox, store, config, report)
        assert report.problems == [], output + "\n---\n".join(later)
        assert report.sent > 0
    finally:
        store.close()
