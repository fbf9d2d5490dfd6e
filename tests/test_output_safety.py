"""What `outbox list|show` and `status` print is safe with hostile CRM text, fits 80 columns,
and tells when a `retry` row goes next; `status` says when a mapping file is broken.

Driven through the real CLI (a subprocess with COLUMNS=80, as a terminal would set it) over a
store seeded with rows whose stage names, record ids and reasons a CRM user typed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ga4sync.cli.display import printable
from ga4sync.core.model import Status
from ga4sync.mapping.load import check_mapping
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.sandbox.runner import GA4_SECRET, SandboxEnvironment
from ga4sync.state.store import OutboxRow, Settlement, StateStore

MARKUP_STAGE = "[/]"
LINK_STAGE = "[link=https://evil.example]click[/link]"
TITLE_ESCAPE = "\x1b]0;pwned\x07"
"""OSC 0: sets the terminal's window title when it reaches a terminal."""
BIDI = "Won\u202eeuqinu"
LONG_EVENT = "close_convert_lead_with_a_forty_char_nm"
LONG_REASON = "GA4 answered 503 Service Unavailable " + "because the backend was busy " * 6


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI in its own process, on an 80-column terminal."""
    env = {**os.environ, "COLUMNS": "80", "LINES": "40"}
    return subprocess.run(
        [sys.executable, "-m", "ga4sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _row(i: int, now: datetime, to_value: str, **extra: object) -> OutboxRow:
    base: dict[str, object] = {
        "key": f"{i:02x}" * 32,
        "connector": "salesforce",
        "object_type": "Opportunity",
        "record_id": f"006{TITLE_ESCAPE}{i:012d}",
        "field": "StageName",
        "from_value": MARKUP_STAGE,
        "to_value": to_value,
        "changed_at": now - timedelta(minutes=i),
        "detected_by": "history",
        "status": Status.PENDING,
        "rule": "won",
        "event_name": LONG_EVENT,
        "payload": {
            "client_id": f"{i}.1700000000",
            "event": {"name": LONG_EVENT, "params": {"value": 1234567.89, "currency": "USD"}},
        },
        "record": {"Id": f"006{i}", "Name": f"Acme {TITLE_ESCAPE} {LINK_STAGE}"},
    }
    return OutboxRow(**(base | extra))  # type: ignore[arg-type]


@pytest.fixture
def hostile(sandbox: SandboxEnvironment, state_url: str) -> tuple[Path, str, datetime]:
    """Three rows with markup, escapes and bidi in their CRM text; the first in `retry`."""
    now = datetime.now(UTC)
    rows = [
        _row(1, now, LINK_STAGE),
        _row(2, now, BIDI, status=Status.SKIPPED, reason=f"no_client_id: {MARKUP_STAGE}"),
        _row(3, now, MARKUP_STAGE, status=Status.INVALID, reason=LONG_REASON + TITLE_ESCAPE),
    ]
    retry_at = now + timedelta(minutes=7)
    with StateStore.open(state_url) as store:
        store.capture(
            connector="salesforce", object_type="Opportunity", rows=rows, watermark=None, now=now
        )
        (claimed,) = store.claim_due(now, limit=10, lease=timedelta(minutes=5))
        store.settle(
            [
                Settlement(
                    claimed.key,
                    claimed.claim_token,
                    Status.RETRY,
                    reason=f"GA4 answered 503 {MARKUP_STAGE}",
                    next_attempt_at=retry_at,
                    http_status=503,
                )
            ],
            now,
        )
    return sandbox.write_config(state_url=state_url), rows[0].key, retry_at


def _harmless(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "Traceback" not in output and "MarkupError" not in output
    assert GA4_SECRET not in output


def _fits(output: str) -> None:
    too_long = [line for line in output.splitlines() if len(line) > 80]
    assert not too_long, too_long


def test_outbox_list_shows_hostile_crm_text_literally_and_fits_80_columns(
    hostile: tuple[Path, str, datetime],
) -> None:
    config, retry_key, retry_at = hostile
    listed = cli(config, "outbox", "list")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    _harmless(out + listed.stderr)
    _fits(out)
    # Markup shows as typed; control characters show as their escapes.
    assert MARKUP_STAGE in out and "[link=https://evil.example]click[/link]" in out
    assert printable(TITLE_ESCAPE) in out and "\\u202e" in out
    # Every key prefix `outbox show` needs is whole on one line, with the whole event name.
    for key in ("01" * 8, "02" * 8, "03" * 8):
        (line,) = [line for line in out.splitlines() if key in line]
        assert LONG_EVENT in line
    # The long reason is all there, wrapped onto its own lines.
    flat = " ".join(line.strip() for line in out.splitlines())
    assert "because the backend was busy " * 5 in flat + " "
    assert f"next attempt {retry_at.isoformat()[:16].replace('T', ' ')} UTC" in out

    wide = cli(config, "outbox", "list", "--wide")
    assert wide.returncode == 0 and retry_key in wide.stdout
    _harmless(wide.stdout)


def test_outbox_list_json_carries_client_id_event_params_and_next_attempt(
    hostile: tuple[Path, str, datetime],
) -> None:
    config, retry_key, retry_at = hostile
    listed = cli(config, "outbox", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["key"]: r for r in json.loads(listed.stdout)}
    retry = rows[retry_key]
    assert retry["client_id"] == "1.1700000000" and retry["event"] == LONG_EVENT
    assert retry["params"] == {"value": 1234567.89, "currency": "USD"}
    assert retry["status"] == "retry"
    assert abs(datetime.fromisoformat(retry["next_attempt_at"]) - retry_at) < timedelta(seconds=1)
    # JSON stays exact: the CRM text round-trips byte for byte.
    assert retry["record_id"] == f"006{TITLE_ESCAPE}{1:012d}"
    assert retry["to"] == LINK_STAGE
    assert all(r["next_attempt_at"] is None for k, r in rows.items() if k != retry_key)
    assert GA4_SECRET not in listed.stdout


def test_outbox_show_never_sends_control_characters_to_the_terminal(
    hostile: tuple[Path, str, datetime],
) -> None:
    config, retry_key, retry_at = hostile
    for key in (retry_key, "03" * 32):
        shown = cli(config, "outbox", "show", key[:16])
        assert shown.returncode == 0, shown.stderr
        _harmless(shown.stdout + shown.stderr)
        assert printable(TITLE_ESCAPE) in shown.stdout
    shown = cli(config, "outbox", "show", retry_key)
    assert f"next attempt at {retry_at.isoformat()[:19]}" in shown.stdout
    as_json = json.loads(cli(config, "outbox", "show", retry_key, "--format", "json").stdout)
    assert as_json["record_id"] == f"006{TITLE_ESCAPE}{1:012d}"
    assert as_json["next_attempt_at"] is not None


def test_status_escapes_crm_text_and_says_when_the_retry_goes(
    hostile: tuple[Path, str, datetime],
) -> None:
    config, _, retry_at = hostile
    result = cli(config, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    _harmless(result.stdout + result.stderr)
    _fits(result.stdout)
    assert MARKUP_STAGE in result.stdout
    assert f"the next goes at {retry_at.isoformat(timespec='minutes')[:16]}" in result.stdout
    doc = json.loads(cli(config, "status", "--format", "json").stdout)
    (conn,) = [c for c in doc["connectors"] if c["name"] == "salesforce"]
    assert conn["next_retry_at"].startswith(retry_at.isoformat()[:16])


def test_status_says_mapping_broken_with_the_file_and_line(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    mapping = tmp_path / "opportunity.yaml"
    mapping.write_text((MAPPINGS_DIR / "salesforce_opportunity.yaml").read_text())
    config = sandbox.write_config(state_url=state_url, mapping=mapping)
    sandbox.seed(count=3, seed=1)
    first = cli(config, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    good = json.loads(cli(config, "status", "--format", "json").stdout)["connectors"][0]
    assert good["last_run"]["result"] == "ok" and not good["mapping_broken"]

    text = mapping.read_text().splitlines()
    text[2] = text[2] + "\n   bad indent: here"
    mapping.write_text("\n".join(text) + "\n")
    shown = cli(config, "status")
    assert shown.returncode == 0, shown.stderr
    assert "mapping broken" in shown.stdout
    where = str(check_mapping(mapping).problems[0]).split(": ")[0]
    assert where.startswith(f"{mapping}:") and where in shown.stdout.replace("\n", "")
    broken = json.loads(cli(config, "status", "--format", "json").stdout)["connectors"][0]
    assert broken["mapping_broken"] and broken["mapping_problem"].startswith(where + ": ")
    # The last good run's figures are kept.
    assert broken["last_run"]["captured"] == good["last_run"]["captured"]
    assert broken["queue"] == good["queue"]
