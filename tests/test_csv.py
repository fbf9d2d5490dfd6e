"""CSV connector through the Engine to the GA4 sandbox, on both state backends."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from ga4sync.core.model import Status
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.csv_support import HEADER, berlin, csv_engine, write_rows


def test_bad_rows_are_reported_by_number_and_good_rows_are_sent(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url)
    now = sandbox.clock.now()
    t1, t2 = berlin(now - timedelta(hours=2)), berlin(now - timedelta(hours=1))
    write_rows(
        config.base_dir / "inbox" / "pos-2026-03-01.csv",
        [
            f"S-1,purchase,{t1},19.90,GA1.1.111.222,1700000001,first",  # row 2
            f",purchase,{t1},5,333.444,,no id",  # row 3
            f"S-3,purchase,{t1},5,333.444,,too,many,cells",  # row 4
            "",  # row 5: an empty line
            "S-5,purchase,soon,5,333.444,,bad time",  # row 6
            f'S-6,call,{t2},0,555.666,,"quoted, with comma"',  # row 7
            f"S-7,purchase,{t2},7,,,no client id",  # row 8
        ],
    )
    try:
        report = engine.run_once()
        capture = report.captures[0]
        assert capture.status == "ok", capture.error
        assert capture.rejected == 3
        invalid = engine.store.list_outbox(statuses=[Status.INVALID])
        reasons = sorted(r.reason for r in invalid)
        assert len(reasons) == 3
        assert "pos-2026-03-01.csv row 3: column order_id (the record id) is empty" in reasons[0]
        assert "pos-2026-03-01.csv row 4: has 9 cells but the header has 7" in reasons[1]
        assert "pos-2026-03-01.csv row 6: column sold_at holds 'soon'" in reasons[2]
        skipped = engine.store.list_outbox(statuses=[Status.SKIPPED])
        assert [(r.record_id, r.reason.split(":")[0]) for r in skipped] == [("S-7", "no_client_id")]
        events = sandbox.ga4.events()
        assert sorted((e["name"], e["client_id"]) for e in events) == [
            ("generate_lead", "555.666"),
            ("purchase", "111.222"),
        ]
        purchase = next(e for e in events if e["name"] == "purchase")
        assert purchase["params"]["transaction_id"] == "S-1"
        assert purchase["params"]["value"] == 19.9
        assert purchase["params"]["currency"] == "EUR"
        assert purchase["params"]["session_id"] == "1700000001"
        sent = {r.record_id: r for r in engine.store.list_outbox(statuses=[Status.SENT])}
        assert sent["S-1"].detected_by == "file"
        assert sent["S-1"].source_ref == "inbox/pos-2026-03-01.csv row 2"
        assert sent["S-1"].changed_at.replace(tzinfo=None) == (now - timedelta(hours=2)).replace(
            second=0, microsecond=0, tzinfo=None
        )
    finally:
        engine.close()
        engine.store.close()


def test_same_file_twice_sends_nothing_new(sandbox: SandboxEnvironment, state_url: str) -> None:
    engine, config = csv_engine(sandbox, state_url, chunk_rows=3)
    now = sandbox.clock.now()
    inbox = config.base_dir / "inbox"
    rows = [
        f"R-{i},purchase,{berlin(now - timedelta(minutes=30 + i))},{i + 1},{100 + i}.42,,"
        for i in range(10)
    ]
    first_file = write_rows(inbox / "day1.csv", [*rows[:4], "R-bad,purchase,,1,1.1,,", *rows[4:]])
    try:
        first = engine.run_once()
        assert first.captures[0].captured == 11  # 10 rows + 1 rejected row
        assert first.delivery.sent == 10
        # The same content again: skipped by its hash, no rows read at all.
        again = engine.run_once()
        assert again.captures[0].captured == 0 and again.captures[0].duplicates == 0
        # A copy under another name, and an export that repeats yesterday's rows plus one new:
        # read again, but the keys (record id + stage + time) let only the new row through.
        shutil.copy(first_file, inbox / "day1-copy.csv")
        extra = f"R-new,purchase,{berlin(now - timedelta(minutes=5))},3,999.1,,"
        write_rows(inbox / "day2.csv", [*rows, extra])
        third = engine.run_once()
        assert third.captures[0].captured == 1
        assert third.captures[0].duplicates == 10
        assert third.delivery.sent == 1
        ids = sorted(e["params"]["transaction_id"] for e in sandbox.ga4.events())
        assert ids == sorted([f"R-{i}" for i in range(10)] + ["R-new"])
        assert engine.run_once().captures[0].captured == 0
    finally:
        engine.close()
        engine.store.close()


def test_mapping_edit_rereads_files_without_sending_twice(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "pos.yaml"
    original = (Path(__file__).parent / "data" / "csv" / "pos_mapping.yaml").read_text()
    mapping.write_text(original.replace("timezone: Europe/Berlin", "timezone: UTC"))
    engine, config = csv_engine(sandbox, state_url, mapping=mapping)
    now = sandbox.clock.now()
    stamp = (now - timedelta(hours=1)).strftime("%d.%m.%Y %H:%M")
    write_rows(config.base_dir / "inbox" / "a.csv", [f"M-1,purchase,{stamp},5,1.2,,"])
    try:
        assert engine.run_once().delivery.sent == 1
        # Same zone, a new rule: the file is read again (mapping version changed), keys hold.
        mapping.write_text(original.replace("timezone: Europe/Berlin", "timezone: Etc/UTC"))
        second = engine.run_once()
        assert second.captures[0].duplicates == 1
        assert second.delivery.sent == 0
        assert len(sandbox.ga4.events()) == 1
    finally:
        engine.close()
        engine.store.close()


def test_missing_column_rejects_the_file_and_names_the_column(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url)
    now = sandbox.clock.now()
    inbox = config.base_dir / "inbox"
    write_rows(
        inbox / "a-broken.csv",
        [f"X-1,purchase,{berlin(now)},1,1.2,,"],
        header=HEADER.replace("ga_client_id", "ga_clientid"),
    )
    write_rows(inbox / "b-good.csv", [f"G-1,purchase,{berlin(now - timedelta(hours=1))},1,1.2,,"])
    try:
        report = engine.run_once()
        assert report.delivery.sent == 1
        warnings = "\n".join(report.captures[0].warnings)
        assert "inbox/a-broken.csv: column(s) `ga_client_id` (did you mean `ga_clientid`?)" in (
            warnings
        )
        (invalid,) = engine.store.list_outbox(statuses=[Status.INVALID])
        assert "a-broken.csv (whole file)" in invalid.reason
        # The broken file is not marked done: fixed in place, it is read again and sent.
        write_rows(inbox / "a-broken.csv", [f"X-1,purchase,{berlin(now)},1,1.2,,"])
        assert engine.run_once().delivery.sent == 1
    finally:
        engine.close()
        engine.store.close()


def test_a_file_being_written_is_read_only_once_it_has_settled(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """An export in progress: its last row cut short would send client id 111.2 for 111.222."""
    engine, config = csv_engine(sandbox, state_url, ready="settled")
    now = sandbox.clock.now()
    t = berlin(now - timedelta(hours=1))
    export = config.base_dir / "inbox" / "pos.csv"
    complete = [f"S-{i},purchase,{t},{i + 1},111.22{i},," for i in range(3)]
    cut = "\n".join([HEADER, *complete[:2], complete[2][:30]])
    export.write_text(cut, encoding="utf-8")  # the last line is cut: no line break, half a row
    try:
        first = engine.run_once()
        assert first.captures[0].captured == 0
        assert "inbox/pos.csv: new or changed since the last run" in "\n".join(
            first.captures[0].warnings
        )
        # It grew between the two runs: still not read.
        export.write_text(cut + complete[2][30:] + "\n", encoding="utf-8")
        second = engine.run_once()
        assert second.captures[0].captured == 0 and sandbox.ga4.events() == []
        # Unchanged since the previous run: settled, read in full, every row right.
        third = engine.run_once()
        assert third.captures[0].captured == 3 and third.captures[0].rejected == 0
        assert sorted(
            (e["params"]["transaction_id"], e["client_id"]) for e in sandbox.ga4.events()
        ) == [
            ("S-0", "111.220"),
            ("S-1", "111.221"),
            ("S-2", "111.222"),
        ]
        # Read once: later runs skip its content, and say nothing about it.
        fourth = engine.run_once()
        assert fourth.captures[0].captured == 0 and fourth.captures[0].warnings == []
    finally:
        engine.close()
        engine.store.close()


def test_a_file_is_read_once_its_done_marker_exists(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    engine, config = csv_engine(sandbox, state_url, ready="marker", path="inbox/pos-*")
    now = sandbox.clock.now()
    export = config.base_dir / "inbox" / "pos-1.csv"
    write_rows(export, [f"K-1,purchase,{berlin(now - timedelta(hours=1))},5,111.222,,"])
    try:
        waiting = engine.run_once()
        assert waiting.captures[0].captured == 0
        assert "inbox/pos-1.csv: waiting for pos-1.csv.done" in "\n".join(
            waiting.captures[0].warnings
        )
        (config.base_dir / "inbox" / "pos-1.csv.done").write_text("")
        done = engine.run_once()
        assert done.captures[0].captured == 1 and done.captures[0].warnings == []
        assert [e["client_id"] for e in sandbox.ga4.events()] == ["111.222"]
    finally:
        engine.close()
        engine.store.close()
