"""The GA4 api_secret never shows: not in logs (DEBUG on), exception texts, outcomes, reports,
CLI output, or any table of the state store, after deliveries that failed in every way.

The secret travels in the query string, so every failure path that mentions the URL is a leak
waiting to happen (urllib3 logs the request line at DEBUG; requests puts the URL in its
exception messages). The secret here contains `/` and `=` so the URL-encoded form is checked too.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.cli.run_summary import delivery_line, delivery_summary
from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Status
from ga4sync.pipeline.delivery import Delivery, DeliverySettings
from ga4sync.pipeline.ga4_client import Ga4Client, SendOutcome
from ga4sync.sandbox.ga4 import Faults, Ga4Sandbox, serve_ga4
from ga4sync.sandbox.http import SandboxServer, make_tls
from ga4sync.sandbox.runner import GA4_SECRET, SandboxEnvironment
from ga4sync.state import schema
from ga4sync.state.store import StateStore

from tests.test_delivery import MEASUREMENT_ID, capture, row

SECRET = "Zx9/Qk-secret=tail7"
FORMS = (SECRET, quote(SECRET, safe=""), quote(SECRET))


def assert_clean(text: str, where: str) -> None:
    for form in FORMS + (GA4_SECRET,):
        assert form not in text, f"api_secret leaked into {where}"


def dump_state(store: StateStore) -> str:
    """Every row of every table, as text."""
    out = []
    with store.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            out += [repr(tuple(r)) for r in conn.execute(sa.select(table))]
    return "\n".join(out)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    # OpenAPI-generated SDKs (hubspot-api-client) set the urllib3 logger to WARNING when they
    # configure themselves; force DEBUG so the request lines really are produced here.
    caplog.set_level(logging.DEBUG, logger="urllib3")
    yield caplog


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_secret_never_leaks_from_failed_deliveries(
    store: StateStore, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    ga4 = Ga4Sandbox(expected_secret=SECRET, clock=clock)
    plain = serve_ga4(ga4)
    tls = make_tls(tmp_path / "tls")
    tls_server = SandboxServer(ga4.app, tls=tls.context).start()
    other_ca = make_tls(tmp_path / "other").ca_file
    endpoints = {
        "500": (plain.url, Faults(status_500=1.0)),
        "429": (plain.url, Faults(status_429=1.0)),
        "reset_before": (plain.url, Faults(reset_before=1.0)),
        "reset_after": (plain.url, Faults(reset_after=1.0)),
        "stall": (plain.url, Faults(stall=1.0, stall_seconds=0.4)),
        "400": (plain.url, Faults(status_400=1.0)),
        "refused": (f"http://127.0.0.1:{closed_port()}", Faults()),
        "bad_ca": (tls_server.url, Faults()),
        "missing_ca": (tls_server.url, Faults()),
        "ok": (plain.url, Faults()),
    }
    seen: list[str] = []

    def remember(_row: object, status: Status, outcome: SendOutcome | None) -> None:
        seen.append(f"{status} {outcome}")

    texts: list[str] = []
    try:
        for kind, (url, faults) in endpoints.items():
            now = clock.now()
            capture(store, [row(f"{kind}-{i}", now) for i in range(3)], now)
            ga4.set_faults(faults)
            ca = {"bad_ca": str(other_ca), "missing_ca": str(tmp_path / "nope.pem")}.get(kind)
            client = Ga4Client(
                endpoint=url,
                measurement_id=MEASUREMENT_ID,
                api_secret=SECRET,
                connect_timeout=0.5,
                read_timeout=0.2,
                ca_file=ca,
            )
            texts.append(repr(client))
            d = Delivery(store, client, clock, DeliverySettings(workers=4), on_outcome=remember)
            report = d.run()
            texts += [repr(report), delivery_line(delivery_summary(report))]
            debug = client.debug({"client_id": "1.2", "events": [{"name": "x"}]})
            texts.append(repr(debug))
            client.close()
    finally:
        plain.stop()
        tls_server.stop()

    statuses = {r.key.split("-")[0]: r.status for r in store.list_outbox()}
    assert statuses == {
        "500": Status.RETRY,
        "429": Status.RETRY,
        "reset_before": Status.UNKNOWN,
        "reset_after": Status.UNKNOWN,
        "stall": Status.UNKNOWN,
        "400": Status.INVALID,
        "refused": Status.RETRY,
        "bad_ca": Status.RETRY,
        "missing_ca": Status.RETRY,
        "ok": Status.SENT,
    }
    log_text = debug_logs.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in debug_logs.records
    )
    # The test only means something if the request lines were logged at all.
    assert "/mp/collect?" in log_text and "api_secret=***" in log_text
    assert_clean(log_text, "DEBUG logs")
    assert_clean("\n".join(seen), "outcomes / exception texts")
    assert_clean("\n".join(texts), "reports and reprs")
    assert_clean(dump_state(store), "the state store")
    reasons = "\n".join(str(r.reason) for r in store.list_outbox())
    assert "SSLError" in reasons and "cannot connect" in reasons  # real failure texts kept


def test_secret_never_leaks_from_the_cli(
    sandbox: SandboxEnvironment, state_url: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    sandbox.seed(count=12, seed=5)
    config = sandbox.write_config(state_url=state_url)
    sandbox.ga4.set_faults(
        Faults(status_500=0.2, status_429=0.2, reset_after=0.2, status_400=0.2, seed=3)
    )
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        outputs = []
        for extra in ([], ["--validate-remote"]):
            result = CliRunner().invoke(
                main, ["--config", str(config), "--log-level", "DEBUG", "run", *extra]
            )
            outputs.append(result.output + (result.stderr or ""))
            if result.exception and not isinstance(result.exception, SystemExit):
                outputs.append(repr(result.exception))
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
    text = "\n".join(outputs)
    assert "GA4: sent" in text and "DEBUG" in text
    assert_clean(text, "CLI output")
    store = StateStore.open(state_url)
    try:
        assert_clean(dump_state(store), "the state store")
    finally:
        store.close()


# -- every uncaught path is scrubbed ----------------------------------------------------------


@pytest.fixture
def restored_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging replaces root handlers and the excepthooks; put them back after."""
    import sys
    import threading

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


def test_an_unexpected_error_is_one_scrubbed_line_and_a_scrubbed_debug_traceback(
    restored_logging: None,
) -> None:
    import click
    from ga4sync.cli.app import Ga4SyncGroup
    from ga4sync.core.logs import configure_logging
    from ga4sync.core.secrets import register_secret

    @click.group(cls=Ga4SyncGroup)
    @click.option("--log-level", default="WARNING")
    def cli(log_level: str) -> None:
        configure_logging(log_level)

    @cli.command()
    def boom() -> None:
        register_secret(SECRET)
        raise RuntimeError(f"POST https://x/mp/collect?api_secret={quote(SECRET)} ({SECRET!r})")

    quiet = CliRunner().invoke(cli, ["boom"])
    assert quiet.exit_code == 1
    assert quiet.stderr.startswith("error: unexpected RuntimeError: POST https://x/mp/collect?")
    assert "--log-level DEBUG" in quiet.stderr and len(quiet.stderr.splitlines()) == 1
    assert "Traceback" not in quiet.output + quiet.stderr
    debug = CliRunner().invoke(cli, ["--log-level", "DEBUG", "boom"])
    assert "Traceback" in debug.stderr and "raise RuntimeError" in debug.stderr
    for text in (quiet.stderr, quiet.output, debug.stderr, debug.output):
        assert_clean(text, "the CLI's unexpected-error output")


def test_json_logs_and_thread_crashes_are_scrubbed(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from ga4sync.core.logs import configure_logging
    from ga4sync.core.secrets import register_secret

    awkward = 'Qv3"quoted\\back-secret'  # JSON escapes both characters
    register_secret(awkward)
    configure_logging("INFO", "json")
    logging.getLogger("ga4sync.test").error("token %s", awkward)

    def crash() -> None:
        raise ValueError(f"bad answer for token={awkward} and {SECRET}")

    register_secret(SECRET)
    thread = threading.Thread(target=crash, name="crashing-worker")
    thread.start()
    thread.join()
    err = capsys.readouterr().err
    assert "crashing-worker" in err and "Traceback" in err  # the crash was logged, scrubbed
    for form in (awkward, json_escaped(awkward), *FORMS):
        assert form not in err


def json_escaped(value: str) -> str:
    import json

    return json.dumps(value)[1:-1]


# -- the proof: one marker secret, every failure, every output --------------------------------

MARKER = "Mk9-marker/Secret=Tail42"
MARKER_FORMS = (MARKER, quote(MARKER, safe=""), quote(MARKER), "Mk9-marker", "Secret=Tail42")


def test_a_marker_secret_never_reaches_any_output_of_any_failure(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """Every refusal and failure of issue 13 through the real CLI (`python -m ga4sync`), with
    the marker as the real GA4 secret and typed into wrong places; stdout, stderr (the logs, at
    DEBUG, text and JSON), status/report/outbox output and the state database hold none of it."""
    import os
    import subprocess
    import sys

    import yaml

    sandbox.seed(count=6, seed=3)
    sandbox.ga4.expected_secret = MARKER
    good = sandbox.write_config(state_url=state_url)
    (good.parent / "secrets" / "ga4_api_secret").write_text(MARKER + "\n")
    fifo = good.parent / "secrets" / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "GA4SYNC_MARKER": MARKER}
    env.pop("GA4SYNC_STATE_URL", None)
    env.pop("GA4SYNC_CONFIG", None)

    def variant(name: str, ga4: dict[str, object], salesforce: dict[str, object]) -> Path:
        doc = yaml.safe_load(good.read_text())
        doc["ga4"].update(ga4)
        doc["connectors"][0].update(salesforce)
        path = good.parent / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    outputs: list[str] = []

    def ga4sync(config: Path, *args: str, code: int | None = None, fmt: str = "text") -> str:
        result = subprocess.run(
            [sys.executable, "-m", "ga4sync", "--config", str(config), "--log-level", "DEBUG"]
            + ["--log-format", fmt, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=config.parent,
            timeout=300,
        )
        text = f"$ {config.name} {' '.join(args)} -> {result.returncode}\n"
        text += result.stdout + result.stderr
        outputs.append(text)
        if code is not None:
            assert result.returncode == code, text
        assert "Traceback" not in text, text
        return text

    session = {"auth": {"method": "session", "session_id": {"file": "secrets/salesforce_session"}}}
    refused = variant(
        "refused",
        {
            "endpoint": f"https://ga4sync:{MARKER}@ga4.example.com",
            "api_secret": MARKER,
            "read_timeout": "0s",
        },
        {"auth": {"session_id": {"env": MARKER}}, "initial_lookback": "99999999999d"},
    )
    text = ga4sync(refused, "run", code=2)
    for field in ("ga4.endpoint", "ga4.api_secret", "ga4.read_timeout", "initial_lookback"):
        assert field in text
    assert "connectors[0].auth.session_id" in text
    no_host = variant(
        "no_host", {"endpoint": "http://", "api_secret": {"env": "GA4SYNC_MARKER"}}, {}
    )
    assert "ga4.endpoint: has no host name" in ga4sync(no_host, "run", code=2)
    short_lease = variant("short_lease", {"lease": "1s", "read_timeout": "1s"}, {})
    assert "must be longer than connect_timeout + read_timeout" in ga4sync(
        short_lease, "run", code=2
    )
    text = ga4sync(
        good,
        "backfill",
        "--connector",
        "salesforce",
        "--from",
        "0001-01-01",
        "--to",
        "9999-12-31",
        code=2,
    )
    assert "outside the dates a backfill can cover" in text

    # Failures found while running: recorded in runs.error and shown by `status`.
    pasted_path = variant("pasted_path", {}, {"auth": {"session_id": {"file": MARKER}}})
    ga4sync(pasted_path, "run", code=1)
    assert "secret file named at" in ga4sync(pasted_path, "status")
    zero = variant("zero", {}, {"auth": {"session_id": {"file": "/dev/zero"}}})
    ga4sync(zero, "run", code=1, fmt="json")
    assert "/dev/zero is a device, not a regular file" in ga4sync(zero, "status")
    pipe = variant("pipe", {"api_secret": {"file": str(fifo)}}, session)
    assert "is a named pipe (FIFO), not a regular file" in ga4sync(pipe, "run", code=2)

    # A run that works, with GA4 failing in the usual ways, the marker as its real secret.
    sandbox.ga4.set_faults(Faults(status_500=0.2, reset_after=0.1, status_400=0.1, seed=4))
    assert "GA4: sent 0 " not in ga4sync(good, "run")
    ga4sync(good, "run", "--validate-remote", fmt="json")
    for args in (
        ["status"],
        ["report"],
        ["outbox", "list"],
        ["outbox", "list", "--format", "json"],
    ):
        ga4sync(good, *args)

    everything = "\n".join(outputs)
    assert "api_secret=***" in everything  # the DEBUG request lines really were logged
    store = StateStore.open(state_url)
    try:
        everything += dump_state(store)
    finally:
        store.close()
    for form in MARKER_FORMS:
        assert form not in everything, f"marker secret ({form}) leaked:\n{everything}"
