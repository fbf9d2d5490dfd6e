"""CSV files as exports really look: BOMs, ANSI, semicolons, tabs, quotes, DST nights."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from ga4sync.connectors.csv import CsvConnector, CsvSettings
from ga4sync.connectors.csv_time import TimeParser, TimeValueError, load_timezone
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow
from ga4sync.mapping.model import MappingFile
from ga4sync.pipeline.fetch_spec import spec_of
from pydantic import ValidationError

from tests.csv_support import DATA, POS_MAPPING, read_csv_files

EVERYTHING = TimeWindow(start=datetime(2000, 1, 1, tzinfo=UTC))


def _mapping(**csv_overrides: object) -> MappingFile:
    doc = yaml.safe_load(POS_MAPPING.read_text())
    doc["csv"].update(csv_overrides)
    doc["csv"] = {k: v for k, v in doc["csv"].items() if v is not None}
    return MappingFile.model_validate(doc)


def _read(
    path: str, mapping: MappingFile | None = None, **settings: object
) -> tuple[list[StageTransition], list[RejectedRecord], list[str]]:
    return read_csv_files(DATA, path, mapping or _mapping(), **settings)


def test_excel_utf8_bom_semicolons_quotes_and_blank_lines() -> None:
    rows, rejected, warnings = _read("utf8_bom_semicolon.csv")
    assert rejected == [] and warnings == []
    assert [(t.record_id, t.to_value) for t in rows] == [("A-1", "purchase"), ("A-2", "call")]
    first = rows[0]
    # 10:15 in Berlin on 1 March (CET, UTC+1) is 09:15 UTC.
    assert first.changed_at == datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    assert first.fields["ga_client_id"] == "GA1.1.111.222"
    assert first.source_ref == "utf8_bom_semicolon.csv row 2"
    assert rows[1].source_ref == "utf8_bom_semicolon.csv row 4"  # row 3 is empty


def test_non_utf8_export_is_read_as_windows_1252_with_a_warning() -> None:
    rows, rejected, warnings = _read("latin1.csv")
    assert rejected == []
    assert [t.record_id for t in rows] == ["B-1"]
    assert warnings == [
        "latin1.csv: not UTF-8; read as Windows-1252 (set `encoding:` in the connector "
        "settings if that is wrong)"
    ]


def test_forced_encoding_and_delimiter_settings() -> None:
    rows, _, warnings = _read("latin1.csv", encoding="latin-1", delimiter=",")
    assert warnings == [] and [t.record_id for t in rows] == ["B-1"]
    tabs, rejected, _ = _read("*.tsv")
    assert rejected == [] and [t.record_id for t in tabs] == ["D-1"]


def test_each_bad_row_is_named_by_number_with_its_reason() -> None:
    rows, rejected, _ = _read("bad_rows.csv", chunk_rows=2)
    assert [t.record_id for t in rows] == ["C-1", "C-9"]
    assert [r.record_ref for r in rejected] == [
        "bad_rows.csv row 3",
        "bad_rows.csv row 4",
        "bad_rows.csv row 5",
        "bad_rows.csv row 6",
        "bad_rows.csv row 8",
        "bad_rows.csv row 9",
    ]
    reasons = [r.reason for r in rejected]
    assert reasons[0] == "column order_id (the record id) is empty"
    assert reasons[1] == "column type (the stage) is empty"
    assert reasons[2].startswith("column sold_at holds 'yesterday', not a time in the format")
    assert "does not exist in Europe/Berlin (the clocks jumped forward" in reasons[3]
    assert "happened twice in Europe/Berlin (the clocks went back" in reasons[4]
    assert reasons[5].startswith("has 8 cells but the header has 7")


@pytest.mark.parametrize(
    ("wall", "utc"),
    [
        # The last minute before and the first after the spring-forward gap (02:00-03:00).
        ("2026-03-29 01:59", datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),
        ("2026-03-29 03:00", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        # Around the autumn fold (02:00-03:00 happens twice): just outside it is unambiguous.
        ("2026-10-25 01:59", datetime(2026, 10, 24, 23, 59, tzinfo=UTC)),
        ("2026-10-25 03:00", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
        # An explicit offset needs no zone and settles the fold.
        ("2026-10-25T02:30:00+02:00", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("2026-10-25T02:30:00+01:00", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        ("2026-10-25T02:30:00Z", datetime(2026, 10, 25, 2, 30, tzinfo=UTC)),
    ],
)
def test_dst_edges_in_berlin(wall: str, utc: datetime) -> None:
    parser = TimeParser("sold_at", None, load_timezone("Europe/Berlin", where="m"), "Europe/Berlin")
    assert parser.parse(wall) == utc


@pytest.mark.parametrize("wall", ["2026-03-29 02:00", "2026-03-29 02:59", "2026-10-25 02:00"])
def test_times_in_the_gap_or_the_fold_are_refused(wall: str) -> None:
    parser = TimeParser("sold_at", None, load_timezone("Europe/Berlin", where="m"), "Europe/Berlin")
    with pytest.raises(TimeValueError, match="export it with a(?: UTC)? offset"):
        parser.parse(wall)


def test_naive_time_without_a_timezone_is_an_error_not_a_guess(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text(
        "order_id,type,sold_at,amount,ga_client_id,ga_session_id,note\n"
        "N-1,purchase,2026-03-01 10:00,1,1.2,,\n"
        "N-2,purchase,2026-03-01T10:00:00+01:00,1,1.2,,\n"
    )
    mapping = _mapping(timezone=None, time_format=None)
    conn = CsvConnector(
        CsvSettings(name="pos", mapping="m.yaml", path="x.csv"),
        spec=spec_of(mapping),
        base_dir=tmp_path,
    )
    pages = list(conn.fetch_transitions(EVERYTHING))
    rejected = [r for p in pages for r in p.rejected]
    sent = [t for p in pages for t in p.transitions]
    assert [t.record_id for t in sent] == ["N-2"]
    assert len(rejected) == 1
    assert rejected[0].reason == (
        "column sold_at holds '2026-03-01 10:00' without a UTC offset and the "
        "mapping sets no csv.timezone; set csv.timezone (e.g. Europe/Berlin) or export times "
        "with an offset"
    )


def test_unknown_timezone_and_missing_csv_block_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="`Berlin` is not an IANA time zone"):
        _mapping(timezone="Berlin")  # so `mappings validate` reports it with its line
    with pytest.raises(ConfigError, match="csv.timezone `Berlin` is not an IANA time zone"):
        load_timezone("Berlin", where="m.yaml")
    plain = _mapping().model_copy(update={"csv": None})
    with pytest.raises(ConfigError, match="needs a `csv:` block"):
        CsvConnector(
            CsvSettings(name="pos", mapping="m.yaml", path="x.csv"),
            spec=spec_of(plain),
            base_dir=DATA,
        )


def test_backfill_window_selects_rows_by_time_and_marks_nothing_done() -> None:
    conn = CsvConnector(
        CsvSettings(name="pos", mapping="m.yaml", path="utf8_bom_semicolon.csv"),
        spec=spec_of(_mapping()),
        base_dir=DATA,
    )
    window = TimeWindow(
        start=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), end=datetime(2026, 3, 2, tzinfo=UTC)
    )
    pages = list(conn.fetch_transitions(window))
    assert [t.record_id for p in pages for t in p.transitions] == ["A-2"]
    assert all(not p.snapshots for p in pages)


def test_unclosed_quote_names_the_row_and_keeps_the_rows_before(tmp_path: Path) -> None:
    """pandas alone would drop everything after an unclosed quote without a word."""
    (tmp_path / "u.csv").write_text(
        "order_id,type,sold_at,amount,ga_client_id,ga_session_id,note\n"
        "Q-1,purchase,2026-03-01T10:00:00Z,1,1.2,,ok\n"
        'Q-2,purchase,2026-03-01T10:00:00Z,1,1.2,,"no closing quote\n'
        "Q-3,purchase,2026-03-01T10:00:00Z,1,1.2,,ok\n"
    )
    (tmp_path / "v-empty.csv").write_text("")
    conn = CsvConnector(
        CsvSettings(name="pos", mapping="m.yaml", path="*.csv"),
        spec=spec_of(_mapping(time_format=None)),
        base_dir=tmp_path,
    )
    pages = list(conn.fetch_transitions(EVERYTHING))
    assert [t.record_id for p in pages for t in p.transitions] == ["Q-1"]
    (rejected,) = [r for p in pages for r in p.rejected]
    assert rejected.record_ref == "u.csv (whole file)"
    assert rejected.reason.startswith("row 3 and everything after it could not be read")
    assert all(not p.snapshots for p in pages)  # not marked done: fixed, it is read again
    assert "v-empty.csv: the file is empty (still being written?)" in conn.warnings


def test_decimal_comma_is_refused_unless_the_settings_say_so(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        "order_id;type;sold_at;amount;ga_client_id;ga_session_id;note\n"
        "E-1;purchase;01.03.2026 10:00;19,90;1.2;;\n"
        "E-2;purchase;01.03.2026 10:00;1.234,50;1.2;;\n"
        "E-3;purchase;01.03.2026 10:00;;1.2;;\n"
    )
    plain, rejected, _ = _read(str(tmp_path / "d.csv"))
    assert [t.record_id for t in plain] == ["E-3"]
    assert [r.record_ref[-5:] for r in rejected] == ["row 2", "row 3"]
    assert "column amount holds '19,90', which reads as a decimal comma" in rejected[0].reason
    comma, rejected, _ = _read(str(tmp_path / "d.csv"), decimal=",")
    assert rejected == []
    assert [t.fields["amount"] for t in comma] == ["19.90", "1234.50", None]
