"""Salesforce's limits as they really answer (issue 12 §2): REQUEST_LIMIT_EXCEEDED is the daily
quota *or* a concurrency limit that clears in seconds; query locators expire mid-run.

Real simple-salesforce over HTTPS against the sandbox org, both state backends.
"""

from __future__ import annotations

from datetime import timedelta

from ga4sync.connectors.registry import build_connector
from ga4sync.core.model import TimeWindow
from ga4sync.mapping.load import load_mapping
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.fetch_spec import fetch_spec
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.sandbox.salesforce import CONCURRENT_LONG_TXN

from tests.conftest import EngineFactory
from tests.test_salesforce import _many_moves

FAST = {"page_size": 200, "busy_backoff": "10ms", "busy_attempts": 4}
"""Pages of 200 so a run pages several times; pauses short (the sandbox clears at once)."""


def test_a_concurrency_limit_is_waited_out_not_taken_for_the_daily_quota(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    ids = _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options=FAST)
    # The 5th call (inside page 2) is refused twice for concurrency, then served.
    sandbox.salesforce.fail(CONCURRENT_LONG_TXN, after=4)
    sandbox.salesforce.fail(CONCURRENT_LONG_TXN)
    report = engine.capture("salesforce")
    assert report.status == "ok", report.error
    rows = engine.store.list_outbox()
    assert {r.record_id for r in rows} == set(ids)
    assert len({r.key for r in rows}) == len(rows) == 450
    # Refused calls count too: Salesforce charges them.
    assert report.api_calls == sandbox.salesforce.data_requests()


def test_a_concurrency_limit_that_does_not_clear_stops_the_run_resumably(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    ids = _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options=FAST)
    sandbox.salesforce.fail(CONCURRENT_LONG_TXN, after=3)
    for _ in range(3):
        sandbox.salesforce.fail(CONCURRENT_LONG_TXN)
    stopped = engine.capture("salesforce")
    assert stopped.status == "failed"
    assert "stayed busy after 4 tries" in (stopped.error or "")
    assert "ConcurrentPerOrgLongTxn" in (stopped.error or "")
    assert len(engine.store.list_outbox()) == 200  # page 1 kept
    resumed = engine.capture("salesforce")
    assert resumed.status == "ok"
    assert {r.record_id for r in engine.store.list_outbox()} == set(ids)


def test_the_daily_quota_is_not_retried(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    _many_moves(sandbox, 450)
    engine, _ = make_engine(salesforce_options=FAST)
    sandbox.salesforce.allow_calls(4)
    stopped = engine.capture("salesforce")
    assert stopped.status == "quota" and "TotalRequests" in (stopped.error or "")
    assert sandbox.salesforce.data_requests() == 5  # the refused call, once


def test_cursors_pushed_out_by_newer_ones_resume_from_the_last_committed_page(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """With one open cursor left to this user (the others held by another integration), each
    page's own record queries push the history cursor out: every queryMore is refused."""
    ids = _many_moves(sandbox, 450)
    sandbox.salesforce.max_open_locators = 1
    engine, _ = make_engine(salesforce_options=FAST)
    report = engine.capture("salesforce")
    assert report.status == "ok", report.error
    assert sandbox.salesforce.expired_locators >= 2  # pages 2 and 3 each lost their cursor
    rows = engine.store.list_outbox()
    assert {r.record_id for r in rows} == set(ids)
    assert len({r.key for r in rows}) == len(rows) == 450


def test_a_cursor_idle_past_its_expiry_resumes_at_the_last_page(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """The engine may take long over a page (a slow store): the cursor dies meanwhile."""
    ids = _many_moves(sandbox, 450)
    config = load_config(sandbox.write_config(state_url=state_url, salesforce_options=FAST))
    settings = config.connector("salesforce")
    mapping = load_mapping(config.resolve(settings.mapping))
    connector = build_connector(settings, fetch_spec(mapping), base_dir=config.base_dir)
    try:
        window = TimeWindow(start=sandbox.clock.now() - timedelta(hours=2))
        pages = connector.fetch_transitions(window)
        first = next(pages)
        sandbox.clock.advance(timedelta(minutes=16))
        rest = list(pages)
    finally:
        connector.close()
    assert sandbox.salesforce.expired_locators == 1
    moves = [t for page in (first, *rest) for t in page.transitions]
    assert {t.record_id for t in moves} == set(ids)
    assert len({t.key for t in moves}) == 450
    # Only the move at the resumed page's watermark is read twice (the engine's key check
    # drops it); nothing after it is skipped.
    assert len(moves) - 450 <= 1
    assert first.watermark is not None
    assert all(t.changed_at >= first.watermark for page in rest for t in page.transitions)
