"""What a marketing-ops engineer meets from outside: the real CLI on real files, real sandbox
servers on loopback, both state backends. Each test is a defect found that way, kept fixed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.csv_support import berlin, csv_config, write_rows


def _cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], env=env)


def test_a_row_repeated_in_one_csv_file_is_counted_once(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """An export that repeats a row (a POS retrying a write) is one transition: the summary
    must still add up, new = to_send + skipped + invalid (it counted the repeat as to send)."""
    config = csv_config(sandbox, state_url)
    at = berlin(sandbox.clock.now() - timedelta(hours=1))
    row = f"R-1,purchase,{at},5,111.222,,first"
    write_rows(config.parent / "inbox" / "pos.csv", [row, row, f"R-2,purchase,{at},5,333.444,,"])

    result = _cli(config, "run", "--format", "json")

    assert result.exit_code == 0, result.output
    (capture,) = json.loads(result.stdout)["captures"]
    assert capture["new"] == 2
    assert capture["already_in_outbox"] == 1
    assert capture["to_send"] == 2
    assert capture["new"] == capture["to_send"] + sum(capture["skipped"].values())
    assert len(sandbox.ga4.events()) == 2
