"""A CSV row timed in the future (a wrong `csv.timezone`) says so, naming the setting and the
mapping file, instead of GA4's bare "is in the future" at delivery. Both state backends."""

from __future__ import annotations

from datetime import timedelta

from ga4sync.core.model import Status
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

from tests.csv_support import POS_MAPPING, berlin, csv_engine, write_rows


def test_csv_rows_hours_ahead_point_at_csv_timezone(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url)
    # On a whole minute: the export writes minutes, so the gap is exactly 2 h 50 min.
    start = sandbox.clock.now()
    sandbox.clock.advance(-timedelta(seconds=start.second, microseconds=start.microsecond))
    now = sandbox.clock.now()
    # Sold 10 minutes ago, but the till writes Asia/Dubai wall-clock time (Berlin + 3 h in
    # winter) while the mapping says Europe/Berlin: the row reads as 2 h 50 min ahead.
    ahead = berlin(now - timedelta(minutes=10) + timedelta(hours=3))
    on_time = berlin(now - timedelta(minutes=10))
    write_rows(
        config.base_dir / "inbox" / "pos.csv",
        [
            f"S-1,purchase,{ahead},19.90,GA1.1.111.222,1700000001,dubai",
            f"S-2,purchase,{on_time},5.00,GA1.1.333.444,1700000002,berlin",
        ],
    )
    try:
        report = engine.run_once()
    finally:
        engine.close()
    assert report.delivery.sent == 1
    with StateStore.open(state_url) as store:
        rows = {r.record_id: r for r in store.list_outbox()}
    bad = rows["S-1"]
    assert bad.status == Status.INVALID.value
    reason = bad.reason or ""
    assert "2 h 50 min ahead" in reason
    assert "csv.timezone" in reason and "Europe/Berlin" in reason
    assert str(POS_MAPPING) in reason
    assert rows["S-2"].status == Status.SENT.value
