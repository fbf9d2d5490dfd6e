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
from ga4sync.cli.common import delivery_line
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
            texts += [repr(report), delivery_line(report)]
            debug = client.debug({"client_id": "1.2", "events": [{"name": "x"}]})
            texts.append(repr(debug))
            client.close()
    finally:
        plain.stop()
        tls_server.stop()

    statuses = {r["key"].split("-")[0]: r["status"] for r in store.list_outbox()}
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
    reasons = "\n".join(str(r["reason"]) for r in store.list_outbox())
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
