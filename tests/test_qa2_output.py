"""Black-box defects found by QA, driven through the real CLI in its own process.

Tables written to a file or a pipe must not cut numbers at 80 columns; usage errors name what
is wrong and what would be right.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from ga4sync.sandbox.runner import SandboxEnvironment, shipped_or_local_mapping
from ga4sync.state.store import StateStore


def cli(
    *args: str, columns: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.pop("GA4SYNC_CONFIG", None)
    env.pop("GA4SYNC_STATE_URL", None)
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run(
        [sys.executable, "-m", "ga4sync", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_demo_piped_to_a_file_keeps_whole_values() -> None:
    """Not a terminal, no COLUMNS: rich's 80-column default cut `48000.0 USD` to `48000.`."""
    result = cli("demo")
    assert result.returncode == 0, result.stderr
    assert "48000.0 USD" in result.stdout
    assert "(12 opportunities, seed 42)" in result.stdout


def test_demo_on_an_80_column_terminal_keeps_whole_values() -> None:
    """On a narrow terminal the text columns give way, never the value."""
    result = cli("demo", columns="80")
    assert result.returncode == 0, result.stderr
    assert "48000.0 USD" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_outbox_with_an_unknown_connector_names_it_and_the_known_ones(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """`--connector nope` said `0 rows` (exit 1), as if the connector existed and was idle."""
    config = sandbox.write_config(state_url=state_url)
    StateStore.open(state_url).close()
    for args in (
        ("outbox", "list", "--connector", "nope"),
        ("outbox", "list", "--format", "json", "--connector", "nope"),
        ("outbox", "resend", "--status", "unknown", "--connector", "nope"),
        ("outbox", "discard", "--status", "unknown", "--connector", "nope", "--reason", "x"),
    ):
        result = cli("--config", str(config), *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "no connector named `nope`" in result.stderr
        assert "salesforce" in result.stderr
        assert result.stdout == ""
    known = cli("--config", str(config), "outbox", "list", "--connector", "salesforce")
    assert known.returncode == 1 and "no connector named" not in known.stderr


def test_mappings_validate_with_nothing_to_check_says_what_it_looked_for(tmp_path: Path) -> None:
    """No config and no mappings/ folder printed `mappings:1:1: file not found`."""
    result = cli("mappings", "validate", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mappings:1:1" not in result.stdout + result.stderr
    assert "no config file at ga4sync.yaml" in result.stderr
    assert f"no mappings/ folder in {tmp_path}" in result.stderr
    assert "ga4sync mappings validate PATH" in result.stderr
    assert "--config" in result.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failed_hubspot_connection_prints_our_error_without_urllib3_retry_warnings(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """urllib3 printed three `Retrying (...)` WARNING lines before our own error, which
    already names the address and the reason; they are kept at DEBUG."""
    config = sandbox.write_config(
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        salesforce=False,
        hubspot=[shipped_or_local_mapping("hubspot_deals.yaml")],
        hubspot_options={"host": f"http://127.0.0.1:{_closed_port()}"},
    )
    result = cli("--config", str(config), "run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Retrying" not in result.stderr
    assert "127.0.0.1" in result.stdout + result.stderr
    debug = cli("--config", str(config), "--log-level", "debug", "run")
    assert "DEBUG urllib3.connectionpool: Retrying" in debug.stderr
    assert "WARNING urllib3" not in debug.stderr


def test_missing_ca_files_are_config_errors_at_their_line(sandbox: SandboxEnvironment) -> None:
    """A missing Salesforce `ca_file` failed at run time with requests' raw OSError (exit 1,
    no line); now every `ca_file` (ga4, Salesforce, HubSpot) is checked when the config loads."""
    config = sandbox.write_config(
        salesforce_options={"ca_file": "certs/missing-sf.pem"},
        hubspot=[shipped_or_local_mapping("hubspot_deals.yaml")],
        hubspot_options={"ca_file": "certs/missing-hs.pem"},
    )
    text = config.read_text()
    config.write_text(text.replace("ga4:\n", "ga4:\n  ca_file: certs/missing-ga4.pem\n", 1))
    lines = config.read_text().splitlines()
    result = cli("--config", str(config), "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "OSError" not in result.stderr
    for name, field in (
        ("missing-ga4.pem", "ga4.ca_file"),
        ("missing-sf.pem", "connectors[0].ca_file"),
        ("missing-hs.pem", "connectors[1].ca_file"),
    ):
        line = next(i for i, text in enumerate(lines, 1) if name in text)
        assert f"{config}:{line}:" in result.stderr, (name, result.stderr)
        assert f"{field}: CA file {sandbox.workdir / 'certs' / name} not found" in result.stderr


def test_a_missing_ca_file_does_not_stop_commands_that_only_read_the_store(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """`status` (monitoring) reads the state store only; a config copied without its CA file
    must still show it, while `run` refuses at the config line."""
    config = sandbox.write_config(
        state_url=f"sqlite:///{tmp_path / 'state.db'}",
        salesforce_options={"ca_file": "certs/missing-sf.pem"},
    )
    StateStore.open(f"sqlite:///{tmp_path / 'state.db'}").close()
    assert cli("--config", str(config), "status").returncode == 0
    assert cli("--config", str(config), "run").returncode == 2


def test_mappings_validate_and_preview_name_a_missing_ca_file_at_its_line(
    sandbox: SandboxEnvironment,
) -> None:
    """`mappings validate --config` and `mappings preview` ask the CRM too: a missing
    `ca_file` is the config error at its line there as well, not requests' raw OSError."""
    config = sandbox.write_config(salesforce_options={"ca_file": "certs/missing-sf.pem"})
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "missing-sf" in t)
    expected = f"{config}:{line}:"
    preview = cli("--config", str(config), "mappings", "preview", "--connector", "salesforce")
    assert preview.returncode == 2, preview.stdout + preview.stderr
    assert expected in preview.stderr and "OSError" not in preview.stderr
    validate = cli("--config", str(config), "mappings", "validate")
    assert validate.returncode != 0, validate.stdout + validate.stderr
    output = validate.stdout + validate.stderr
    assert expected in output and "OSError" not in output and "Traceback" not in output
