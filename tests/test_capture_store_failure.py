"""A state-store failure in the middle of a capture is one line in the report, not a traceback.

The store retries dropped connections itself; what still fails (a third drop in a row, a
table gone, a lock held past the busy timeout) must not reach the console as a traceback, and
what was committed before it stays for the next run.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from tests.conftest import EngineFactory


def test_a_store_failure_mid_capture_is_one_line_and_no_traceback(
    make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _ = make_engine()
    with engine.store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE watermarks"))
    with caplog.at_level(logging.DEBUG):
        report = engine.capture("salesforce")
    assert report.status == "failed"
    assert report.error and "watermarks" in report.error
    assert "Traceback" not in report.error
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
