"""A run delivers while its capture is still paging, and a stop between a page and its delivery
loses nothing and sends nothing twice (both state backends, the real CSV connector, the GA4
sandbox over HTTP)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from ga4sync.core.model import Status
from ga4sync.pipeline.engine import CaptureReport
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.csv_support import berlin, csv_engine, write_rows

ROWS = 60
PAGE = 10
WAIT_FOR_GA4_S = 60.0
"""How long a page may wait for GA4 to receive the first event: generous, a loaded machine
only makes it slower; without pipelining it never comes, because delivery waits for capture."""


def _write_calls(sandbox: SandboxEnvironment, config_dir: object, count: int) -> list[str]:
    when = berlin(sandbox.clock.now() - timedelta(hours=1))
    client_ids = [f"{700_000 + i}.1700000000" for i in range(count)]
    write_rows(
        config_dir / "inbox" / "calls.csv",  # type: ignore[operator]
        [f"C-{i:03d},call,{when},10,{cid},," for i, cid in enumerate(client_ids)],
    )
    return client_ids


def _received(sandbox: SandboxEnvironment) -> Counter[str]:
    return Counter(str(e["client_id"]) for e in sandbox.ga4.events())


def test_the_first_event_goes_while_the_capture_is_still_paging(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url, chunk_rows=PAGE)
    client_ids = _write_calls(sandbox, config.base_dir, ROWS)
    delivered_during_capture: list[int] = []

    def after_first_page(capture: CaptureReport) -> None:
        if delivered_during_capture:
            return
        deadline = time.monotonic() + WAIT_FOR_GA4_S
        while not sandbox.ga4.events() and time.monotonic() < deadline:
            time.sleep(0.01)
        delivered_during_capture.append(len(sandbox.ga4.events()))

    try:
        report = engine.run_once(on_page=after_first_page)
        assert report.captures[0].status == "ok", report.captures[0].error
        assert report.captures[0].captured == ROWS
        assert delivered_during_capture[0] > 0  # GA4 had events before page 2 was read
        assert report.delivery.sent == ROWS
        assert _received(sandbox) == Counter(client_ids)  # each exactly once
        assert engine.store.list_outbox(statuses=[Status.PENDING, Status.SENDING]) == []
    finally:
        engine.close()
        engine.store.close()


def test_a_run_stopped_between_a_page_and_its_delivery_loses_nothing_and_sends_nothing_twice(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url, chunk_rows=PAGE)
    client_ids = _write_calls(sandbox, config.base_dir, ROWS)

    def stop_after_first_page(capture: CaptureReport) -> None:
        engine.stop_event.set()  # SIGTERM right after the page's commit

    try:
        first = engine.run_once(on_page=stop_after_first_page)
        assert first.captures[0].status == "stopped"
        assert first.captures[0].captured == PAGE
        received = _received(sandbox)
        assert all(n == 1 for n in received.values())
        assert first.delivery.sent == sum(received.values()) <= PAGE
        assert first.delivery.unknown == 0
        not_yet = engine.store.list_outbox(statuses=[Status.PENDING, Status.RETRY])
        assert len(not_yet) == PAGE - first.delivery.sent  # committed, kept for the next run

        engine.stop_event.clear()  # the next cron run
        second = engine.run_once()
        assert second.captures[0].status == "ok", second.captures[0].error
        assert _received(sandbox) == Counter(client_ids)  # everything, each exactly once
        sent = engine.store.list_outbox(statuses=[Status.SENT])
        assert len(sent) == ROWS
    finally:
        engine.close()
        engine.store.close()
