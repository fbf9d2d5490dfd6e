"""Real-world broken files, as an outside tester would throw them at ga4sync.

Excel and POS exports (UTF-16, undefined ANSI bytes, NUL bytes, wide first rows, huge notes,
European numbers), mapping files that validate but could never run, and config settings
that cannot mean anything. Each case found a defect: a traceback, a stalled connector, a
silently wrong value, or a problem reported only when the daemon starts.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.connectors.csv import CsvConnector, CsvSettings
from ga4sync.connectors.csv_cells import read_number
from ga4sync.core.model import RejectedRecord, StageTransition, Status, TimeWindow
from ga4sync.mapping.model import MappingFile
from ga4sync.pipeline.fetch_spec import spec_of
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.csv_support import (
    HEADER,
    POS_MAPPING,
    berlin,
    csv_config,
    csv_engine,
    read_csv_files,
    write_rows,
)

EVERYTHING = TimeWindow(start=datetime(2000, 1, 1, tzinfo=UTC))
ISO_ROW = "{id},purchase,2026-03-01T10:00:00Z,5,1.2,,{note}"


def _iso_mapping() -> MappingFile:
    doc = yaml.safe_load(POS_MAPPING.read_text())
    doc["csv"] = {"record_id_column": "order_id", "time_column": "sold_at"}
    return MappingFile.model_validate(doc)


def _read(
    folder: Path, **settings: object
) -> tuple[list[StageTransition], list[RejectedRecord], list[str]]:
    return read_csv_files(folder, "*.csv", _iso_mapping(), **settings)


# -- CSV files -----------------------------------------------------------------------------
def test_wide_first_row_is_rejected_without_shifting_the_columns(tmp_path: Path) -> None:
    """pandas took a wide first row's extra cells for an index and failed the whole run."""
    (tmp_path / "a.csv").write_text(
        "\n".join(
            [
                HEADER,
                ISO_ROW.format(id="W-1", note="x") + ",extra,cells",
                ISO_ROW.format(id="W-2", note="ok"),
            ]
        )
    )
    rows, rejected, _ = _read(tmp_path)
    assert [(t.record_id, t.fields["amount"]) for t in rows] == [("W-2", "5")]
    (bad,) = rejected
    assert bad.record_ref == "a.csv row 2"
    assert bad.reason.startswith(
        "has 9 cells but the header has 7; a delimiter inside a value needs quotes"
    )
    assert bad.raw["order_id"] == "W-1" and bad.raw["cell 9"] == "cells"


SIX_COLUMNS = "order_id,type,sold_at,amount,ga_client_id,ga_session_id"


@pytest.mark.parametrize(
    ("row", "cells"),
    [
        # `1,250.50` unquoted: amount 1 and client id 250.50 were sent; the last cell is empty.
        ("A-2001,purchase,2026-03-01T10:00:00Z,1,250.50,444.555,", 7),
        ("A-2002,purchase,2026-03-01T10:00:00Z,5,444.555,,,", 8),  # trailing empties too
        ("A-2003,purchase,2026-03-01T10:00:00Z,5,444.555", 5),  # cut short
    ],
)
def test_a_row_with_another_cell_count_than_the_header_is_refused_whatever_it_holds(
    tmp_path: Path, row: str, cells: int
) -> None:
    write_rows(
        tmp_path / "a.csv",
        [row, "A-9,purchase,2026-03-01T10:00:00Z,5,444.556,"],
        header=SIX_COLUMNS,
    )
    rows, rejected, _ = _read(tmp_path)
    assert [t.record_id for t in rows] == ["A-9"]  # the rest of the file goes on
    (bad,) = rejected
    assert bad.record_ref == "a.csv row 2"
    assert bad.reason.startswith(f"has {cells} cells but the header has 6; ")
    assert bad.raw["order_id"] == row.split(",")[0]


def test_time_beyond_year_9999_rejects_that_row_only(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        f"{HEADER}\nT-1,purchase,9999-12-31T23:59:59-12:00,5,1.2,,\n"
        f"{ISO_ROW.format(id='T-2', note='')}\n"
    )
    rows, rejected, _ = _read(tmp_path)
    assert [t.record_id for t in rows] == ["T-2"]
    assert "too close to year 1 or 9999" in rejected[0].reason


@pytest.mark.parametrize(
    ("name", "delimiter", "codec", "bom"),
    [
        ("excel_unicode_text", "\t", "utf-16-le", b"\xff\xfe"),  # Save As > Unicode Text
        ("utf16_without_bom", ",", "utf-16-le", b""),
        ("utf16_big_endian", ";", "utf-16-be", b"\xfe\xff"),
    ],
)
def test_utf16_exports_are_detected(
    tmp_path: Path, name: str, delimiter: str, codec: str, bom: bytes
) -> None:
    """They were read as Windows-1252 and refused for a header of `o r d e r _ i d`."""
    text = f"{HEADER}\n{ISO_ROW.format(id='U-1', note='Müller €')}\n".replace(",", delimiter)
    (tmp_path / f"{name}.csv").write_bytes(bom + text.encode(codec))
    rows, rejected, warnings = _read(tmp_path)
    assert rejected == [] and warnings == []
    assert [(t.record_id, t.fields["ga_client_id"]) for t in rows] == [("U-1", "1.2")]


def test_bytes_windows_1252_does_not_define_refuse_the_file_not_the_run(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(f"{HEADER}\n".encode() + b"X-1,purchase,\x90\x81\xfe,,,\n")
    rows, rejected, _ = _read(tmp_path)
    assert rows == []
    assert rejected[0].record_ref == "a.csv (whole file)"
    assert rejected[0].reason.startswith(
        "not text in UTF-8, UTF-16 or Windows-1252 (byte 0x90 at offset 74)"
    )


def test_a_wrong_forced_encoding_refuses_the_file_with_a_fix(tmp_path: Path) -> None:
    write_rows(tmp_path / "a.csv", [ISO_ROW.format(id="E-1", note="")])
    rows, rejected, _ = _read(tmp_path, encoding="utf-16")
    assert rows == []
    assert rejected[0].reason.startswith("cannot be read as utf-16")
    assert "remove it to have the encoding detected" in rejected[0].reason
    (tmp_path / "a.csv").write_bytes(
        f"{HEADER}\n{ISO_ROW.format(id='E-1', note='')}\n".encode("utf-16")
    )
    rows, rejected, _ = _read(tmp_path, encoding="latin-1")
    assert "the header holds NUL bytes" in rejected[0].reason
    assert "\x00" not in rejected[0].reason


def test_nul_byte_in_a_mapped_cell_rejects_that_row(tmp_path: Path) -> None:
    """A NUL in a stored value made PostgreSQL refuse the whole page, every run."""
    write_rows(
        tmp_path / "a.csv",
        [
            ISO_ROW.format(id="N-\x001", note=""),
            ISO_ROW.format(id="N-2", note="a NUL in an unread \x00 cell is harmless"),
        ],
    )
    rows, rejected, _ = _read(tmp_path)
    assert [t.record_id for t in rows] == ["N-2"]
    assert rejected[0].reason.startswith("column order_id holds a NUL byte")
    assert all("\x00" not in v for v in rejected[0].raw.values())


def test_a_long_note_does_not_stop_the_rest_of_the_file(tmp_path: Path) -> None:
    write_rows(
        tmp_path / "a.csv",
        [
            ISO_ROW.format(id="L-1", note="x" * 300_000),
            ISO_ROW.format(id="L-2", note=""),
        ],
    )
    rows, rejected, _ = _read(tmp_path)
    assert [t.record_id for t in rows] == ["L-1", "L-2"] and rejected == []


def test_record_id_too_long_for_a_key_is_rejected_not_cut(tmp_path: Path) -> None:
    """Cut to 128 characters, two long ids could share a key and one row would vanish."""
    write_rows(tmp_path / "a.csv", [ISO_ROW.format(id="I" * 129 + "a", note="")])
    rows, rejected, _ = _read(tmp_path)
    assert rows == []
    assert "holds a 130-character record id; at most 128" in rejected[0].reason


def test_a_mapped_column_twice_in_the_header_refuses_the_file(tmp_path: Path) -> None:
    write_rows(
        tmp_path / "a.csv",
        [ISO_ROW.format(id="D-1", note="") + ",7"],
        header=HEADER + ",amount",
    )
    rows, rejected, _ = _read(tmp_path)
    assert rows == []
    assert rejected[0].reason.startswith("column(s) `amount` appear more than once")


@pytest.mark.parametrize(
    ("text", "decimal", "read"),
    [
        ("1.234,56", ",", "1234.56"),
        ("1.234", ",", "1234"),
        ("1\u00a0234,50", ",", "1234.50"),  # Excel (fr, ch): no-break space groups
        ("1 234,50", ",", "1234.50"),
        ("19.90", ",", None),  # was 1990
        ("1,234.56", ",", None),  # was 1.23456
        ("1\u202f234.5", ".", "1234.5"),
        ("19,90", ".", None),
    ],
)
def test_numbers_are_read_in_the_notation_set_or_refused(
    text: str, decimal: str, read: str | None
) -> None:
    assert read_number(text, decimal) == read


def test_broken_rows_are_invalid_and_good_rows_sent_on_both_stores(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """Through the engine to the GA4 sandbox: NaN, infinity and NUL bytes never reach GA4
    or the store, and do not stop the rows around them."""
    engine, config = csv_engine(sandbox, state_url)
    t = berlin(sandbox.clock.now() - timedelta(hours=1))
    write_rows(
        config.base_dir / "inbox" / "a.csv",
        [
            f"G-1,purchase,{t},19.90,111.222,,extra,cell",  # row 2: wide first row
            f"G-2,purchase,{t},NaN,111.223,,",  # row 3
            f"G-3,purchase,{t},inf,111.224,,",  # row 4
            f"G-\x004,purchase,{t},5,111.225,,",  # row 5
            f"G-5,purchase,{t},1_000,111.226,,",  # row 6
            f"G-6,purchase,{t},12.50,111.227,,",  # row 7
        ],
    )
    try:
        report = engine.run_once()
        assert report.captures[0].status == "ok", report.captures[0].error
        invalid = {
            r.record_id: r.reason for r in engine.store.list_outbox(statuses=[Status.INVALID])
        }
        assert len(invalid) == 5
        assert "has 8 cells but the header has 7" in invalid["inbox/a.csv row 2"]
        assert "holds a NUL byte" in invalid["inbox/a.csv row 5"]
        for record_id, shown in (("G-2", "'NaN'"), ("G-3", "'inf'"), ("G-5", "'1_000'")):
            assert f"field amount holds {shown}, not a number" in invalid[record_id]
        assert [
            (e["params"]["transaction_id"], e["params"]["value"]) for e in sandbox.ga4.events()
        ] == [("G-6", 12.5)]
    finally:
        engine.close()
        engine.store.close()


# -- config file ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("delimiter", '"', "delimiter cannot be a quote or a line break"),
        ("encoding", "base64", "`base64` is not a text encoding"),
        ("path", "", "connectors[0].path: is empty"),
    ],
)
def test_csv_settings_that_cannot_work_are_config_errors(
    sandbox: SandboxEnvironment, setting: str, value: str, said: str
) -> None:
    config = csv_config(sandbox, "sqlite:///state.db", **{setting: value})
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {config}:")
    assert said in line


# -- mapping files -------------------------------------------------------------------------
def test_validate_refuses_a_pipe_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "mapping.yaml"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["mappings", "validate", str(fifo)])
    assert result.exit_code == 1
    assert f"{fifo}:1:1: this is not a regular file (a pipe or device)" in result.output


def test_a_folder_as_path_says_how_to_name_its_files(tmp_path: Path) -> None:
    (tmp_path / "imports").mkdir()
    write_rows(tmp_path / "imports" / "a.csv", [ISO_ROW.format(id="F-1", note="")])
    conn = CsvConnector(
        CsvSettings(name="pos", mapping="m.yaml", path="imports"),
        spec=spec_of(_iso_mapping()),
        base_dir=tmp_path,
    )
    assert list(conn.fetch_transitions(EVERYTHING)) == []
    assert conn.warnings == [
        "path `imports` is a folder; name the files in it, e.g. `imports/*.csv`"
    ]


def test_preview_shows_rows_the_connector_refused(sandbox: SandboxEnvironment) -> None:
    """Preview dropped them: a file of bad rows previewed as `0 transitions`, no reason."""
    config = csv_config(sandbox, "sqlite:///state.db")
    write_rows(
        config.parent / "inbox" / "a.csv",
        [
            f"P-1,purchase,{berlin(datetime.now(UTC))},5,1.2,,",
            "P-2,purchase,soon,5,1.2,,",
            f"P-3,purchase,{berlin(datetime.now(UTC))},1,250.50,444.555,,",  # `1,250.50`
        ],
    )
    (config.parent / "inbox" / "b.csv").write_bytes(b"\x90\x81")
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "mappings", "preview", "--connector", "pos", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert "warning: pos: inbox/b.csv: not text in UTF-8" in result.stderr
    doc = json.loads(result.stdout)
    refused = {r["record_id"]: r["reason"] for r in doc["transitions"] if r["outcome"] == "invalid"}
    assert refused["inbox/a.csv row 3"].startswith("column sold_at holds 'soon'")
    assert refused["inbox/a.csv row 4"].startswith("has 8 cells but the header has 7")
    assert "inbox/b.csv (whole file)" in refused
    assert {ln["result"] for ln in doc["summary"] if ln["outcome"] == "invalid"} == {
        "unreadable record"
    }
