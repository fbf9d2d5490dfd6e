"""The command line starts fast and takes its global options where people type them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from ga4sync.cli.app import COMMANDS, GLOBAL_OPTIONS, main
from ga4sync.cli.lazy import LazyCommand

from tests.csv_support import POS_MAPPING

HEAVY = ("pandas", "sqlalchemy", "simple_salesforce", "hubspot", "requests", "apscheduler")


def test_help_imports_none_of_the_heavy_libraries() -> None:
    probe = (
        "import sys\n"
        "from ga4sync.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda c: c.name)
def test_every_listed_command_exists_and_its_summary_is_a_whole_sentence(
    spec: LazyCommand,
) -> None:
    command = main.get_command(click.Context(main), spec.name)
    assert isinstance(command, click.Command) and command.name == spec.name
    assert spec.summary.endswith(".") and len(spec.summary) <= 66  # fits 80 columns


@pytest.mark.parametrize(
    "args,expected",
    [
        (["run", "--config", "x.yaml"], ["--config", "x.yaml", "run"]),
        (
            ["status", "--log-level=DEBUG", "--days", "3"],
            ["--log-level=DEBUG", "status", "--days", "3"],
        ),
        (["-c", "a.yaml", "run", "-c", "b.yaml"], ["-c", "a.yaml", "-c", "b.yaml", "run"]),
        (["outbox", "list", "--log-format", "json"], ["--log-format", "json", "outbox", "list"]),
        (["run", "--", "--config"], ["run", "--", "--config"]),
        (["--config", "run", "status"], ["--config", "run", "status"]),
        (["nosuchcommand", "--config", "x"], ["nosuchcommand", "--config", "x"]),
    ],
)
def test_global_options_after_the_subcommand_move_in_front(
    args: list[str], expected: list[str]
) -> None:
    assert main.hoist_global_options(args) == expected  # type: ignore[attr-defined]
    assert set(GLOBAL_OPTIONS) == {"--config", "-c", "--log-level", "--log-format"}


def test_config_after_the_subcommand_is_the_config_used(tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "ga4sync", "run", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"config file {missing} not found" in result.stderr


def test_a_reader_that_goes_away_is_not_reported_as_a_bug() -> None:
    """`ga4sync mappings validate mappings/ | head -1`: the pipe closes; no error, no traceback."""
    mappings = Path(__file__).resolve().parent.parent / "mappings"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ga4sync", "mappings", "validate", str(mappings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before ga4sync writes a line
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    assert "unexpected" not in stderr and "Traceback" not in stderr, stderr


NOT_FOR_A_CSV_RUN = (
    "pandas",
    "simple_salesforce",
    "zeep",
    "hubspot",
    "tenacity",
    "psycopg",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.orm",
    "apscheduler",
    "ga4sync.connectors.salesforce",
    "ga4sync.connectors.hubspot",
    "rich.progress",
    "requests",
    "urllib3",
)
"""Loaded by a CSV-only `ga4sync run` on SQLite with nothing to do: none of these (the CRM
connectors and SDKs, PostgreSQL's driver and dialect, the ORM, the daemon's scheduler, the
progress bar, drawn only on a terminal, and `requests` with urllib3: the GA4 client opens its
session only once a claim brings rows to send)."""


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_csv_only_run_loads_only_what_it_uses(tmp_path: Path, fmt: str) -> None:
    """A cron `ga4sync run` for CSV files must not pay at start-up for what it never uses:
    the CRM SDKs (simple-salesforce pulls in zeep and lxml), PostgreSQL, the scheduler; with
    `--format json`, nothing draws a table, so rich is not imported at all. Which modules
    load is asserted, not how long they take (timings belong to bench.e2e)."""
    (tmp_path / "secret").write_text("not-used\n")
    (tmp_path / "inbox").mkdir()
    config = tmp_path / "ga4sync.yaml"
    config.write_text(
        "ga4: {measurement_id: G-TEST0001, api_secret: {file: secret}, "
        "endpoint: 'http://127.0.0.1:9'}\n"
        "state: {url: 'sqlite:///state.db'}\n"
        "connectors:\n"
        f"  - {{name: pos, type: csv, mapping: '{POS_MAPPING}', path: 'inbox/*.csv', "
        "ready: renamed}\n"
    )
    unwanted = NOT_FOR_A_CSV_RUN + (("rich",) if fmt == "json" else ())
    probe = (
        "import sys\n"
        "from ga4sync.cli import main\n"
        "try:\n"
        f"    main(['run', '--config', {str(config)!r}, '--format', {fmt!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert ("Capture" in out.stdout) == (fmt == "text")  # the run did print its summary
