"""What a marketing-ops engineer meets from outside: the real CLI on real files, real sandbox
servers on loopback, both state backends. Each test is a defect found that way, kept fixed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.sandbox.runner import GA4_SECRET, SandboxEnvironment
from ga4sync.state.store import StateStore

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


def test_a_secret_from_an_env_var_with_a_trailing_newline_still_reaches_ga4(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """`export GA4SYNC_API_SECRET="$(cat file)"` trims, but Kubernetes secrets and .env files
    often keep the newline. GA4 answers 2xx to a wrong api_secret and drops the events, so the
    newline lost every event silently while ga4sync marked them sent. A secret file was
    already stripped; an environment variable now is too."""
    config = csv_config(sandbox, state_url)
    text = config.read_text().replace("file: secrets/ga4_api_secret", "env: QA_GA4_SECRET")
    config.write_text(text)
    at = berlin(sandbox.clock.now() - timedelta(hours=1))
    write_rows(config.parent / "inbox" / "pos.csv", [f"N-1,purchase,{at},5,111.222,,"])

    result = _cli(config, "run", "--format", "json", env={"QA_GA4_SECRET": GA4_SECRET + "\r\n"})

    assert result.exit_code == 0, result.output
    assert sandbox.ga4.dropped_bad_secret == 0
    assert [e["client_id"] for e in sandbox.ga4.events()] == ["111.222"]


def test_an_env_var_holding_only_spaces_is_a_missing_secret(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    config = csv_config(sandbox, state_url)
    text = config.read_text().replace("file: secrets/ga4_api_secret", "env: QA_GA4_SECRET")
    config.write_text(text)

    result = _cli(config, "run", env={"QA_GA4_SECRET": " \n"})

    assert result.exit_code == 2, result.output
    assert "QA_GA4_SECRET" in result.output and "is not set" in result.output
    assert "Traceback" not in result.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_crm_is_named_with_its_address_and_the_reason(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """`salesforce failed: cannot reach Salesforce: ConnectionError` told a person neither
    where ga4sync tried nor why; HubSpot's said `MaxRetryError`. Both now say the address and
    what happened (connection refused, name not found, certificate, timeout)."""
    hubspot = Path(__file__).parent.parent / "mappings" / "hubspot_deals.yaml"
    sf_url = f"https://127.0.0.1:{_closed_port()}"
    hs_url = f"http://127.0.0.1:{_closed_port()}"
    config = sandbox.write_config(
        state_url=state_url,
        salesforce_options={"instance_url": sf_url},
        hubspot=[hubspot],
        hubspot_options={"host": hs_url},
    )

    result = _cli(config, "run", "--format", "json")

    assert result.exit_code == 1, result.output
    errors = {c["connector"]: c["error"] for c in json.loads(result.stdout)["captures"]}
    assert sf_url in errors["salesforce"] and "refused" in errors["salesforce"].lower()
    assert hs_url in errors["hubspot_deals"] and "refused" in errors["hubspot_deals"].lower()
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"", b"\n", b"\xff\xfe\x00bad", b"x" * 20000])
def test_a_bad_secret_file_names_the_config_line_that_points_at_it(
    sandbox: SandboxEnvironment, state_url: str, content: bytes
) -> None:
    """README: an error about a secret field names its file:line. A missing secret file did;
    an empty, non-text or oversized one named only the secret file, not where the config
    points at it (the line to fix when the wrong file is named)."""
    config = csv_config(sandbox, state_url)
    (config.parent / "secrets" / "ga4_api_secret").write_bytes(content)

    result = _cli(config, "run")

    assert result.exit_code == 2, result.output
    assert f"{config.name}:" in result.output and "ga4.api_secret" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_key_in_the_config_is_not_called_a_mapping_key(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """`connectors[0].evry: unknown key (mapping keys are fixed ...)` sent a person looking
    through mapping files for a typo that is in ga4sync.yaml."""
    config = csv_config(sandbox, state_url)
    config.write_text(config.read_text().replace("ready: renamed", "ready: renamed\n  evry: 5m"))

    result = _cli(config, "run")

    assert result.exit_code == 2, result.output
    assert "unknown key `evry`" in result.output and "did you mean `every`?" in result.output
    assert "mapping keys" not in result.output
    assert "config keys are fixed" in result.output


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ("type: CSV", "connectors[0].type: the text `CSV` is not one of salesforce, hubspot, csv"),
        ("kind: csv", "connectors[0].type: required key `type` is missing"),
    ],
)
def test_a_wrong_or_missing_connector_type_reads_like_any_other_mistake(
    sandbox: SandboxEnvironment, state_url: str, replacement: str, expected: str
) -> None:
    """It was pydantic's own words: `Input tag 'CSV' found using 'type' does not match any of
    the expected tags` and `Unable to extract tag using discriminator 'type'`."""
    config = csv_config(sandbox, state_url)
    config.write_text(config.read_text().replace("type: csv", replacement))

    result = _cli(config, "run")

    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "tag" not in result.output and "discriminator" not in result.output


def test_status_after_a_killed_run_does_not_say_rows_are_sending_now(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    """After a SIGKILL mid-send, status said `sending now: 372` with nothing running. The rows
    are held by the dead run's claim until its lease ends; status now says so."""
    config = csv_config(sandbox, state_url)
    at = berlin(sandbox.clock.now() - timedelta(hours=1))
    write_rows(config.parent / "inbox" / "pos.csv", [f"H-1,purchase,{at},5,111.222,,"])
    doc = config.read_text()
    config.write_text(doc.replace(sandbox.ga4_server.url, f"http://127.0.0.1:{_closed_port()}"))
    assert _cli(config, "run").exit_code == 1  # GA4 unreachable: the row waits as retry
    store = StateStore.open(state_url)
    try:  # a run that claimed it and was killed before it sent
        later = datetime.now(UTC) + timedelta(hours=1)
        assert len(store.claim_due(later, limit=10, lease=timedelta(minutes=5))) == 1
    finally:
        store.close()

    result = _cli(config, "status")

    assert result.exit_code == 0, result.output
    assert "sending now" not in result.output
    assert "sending: 1" in result.output and "lease" in result.output


def test_backfill_into_a_log_file_has_no_progress_bars(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    """`run` shows progress only on a terminal; `backfill` drew its bars into cron logs and
    CI output too (stderr redirected to a file)."""
    config = csv_config(sandbox, state_url)
    now = sandbox.clock.now()
    write_rows(config.parent / "inbox" / "pos.csv", [f"B-1,purchase,{berlin(now)},5,111.222,,"])
    day = now.strftime("%Y-%m-%d")
    log = tmp_path / "cron.log"
    with log.open("wb") as err:
        done = subprocess.run(
            [sys.executable, "-m", "ga4sync", "--config", str(config), "backfill"]
            + ["--connector", "pos", "--from", day, "--to", day],
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=300,
            check=False,
        )

    assert done.returncode == 0, log.read_text()
    assert "sent" in done.stdout.decode()
    assert "━" not in log.read_text(encoding="utf-8")
