"""Rows a killed run left `sending` are shown by `status` (so the Outbox table adds up) and
named by the next `run` (how many, when their lease ends), on both state backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ga4sync.core.model import Status
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import OutboxRow, StateStore

from tests.test_qa2_output import cli

LEASE = timedelta(minutes=5)


def _row(i: int, now: datetime) -> OutboxRow:
    return OutboxRow(
        key=f"{i:02x}" * 32,
        connector="salesforce",
        object_type="Opportunity",
        record_id=f"006{i:012d}",
        field="StageName",
        from_value="Prospecting",
        to_value="Closed Won",
        changed_at=now - timedelta(minutes=i),
        detected_by="history",
        status=Status.PENDING,
        rule="won",
        event_name="purchase",
        payload={"client_id": f"{i}.1700000000", "event": {"name": "purchase", "params": {}}},
        record={"Id": f"006{i}"},
    )


def _killed_run(sandbox: SandboxEnvironment, state_url: str) -> tuple[Path, datetime]:
    """Three rows claimed by a sender that then died (a SIGKILL: nothing settles them)."""
    now = datetime.now(UTC)
    with StateStore.open(state_url) as store:
        store.capture(
            connector="salesforce",
            object_type="Opportunity",
            rows=[_row(i, now) for i in (1, 2, 3)],
            watermark=None,
            now=now,
        )
        claimed = store.claim_due(now, limit=10, lease=LEASE)
        assert len(claimed) == 3
    return sandbox.write_config(state_url=state_url), now + LEASE


def test_status_table_counts_rows_held_by_a_lease_and_says_when_it_ends(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    config, lease_end = _killed_run(sandbox, state_url)
    result = cli("--config", str(config), "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "pending" in line and "sent" in line)
    header = lines[at]
    assert "sending" in header
    row = next(line for line in lines[at:] if line.startswith("│ salesforce"))
    cells = [c.strip() for c in row.strip("│").split("│")]
    names = [c.strip() for c in header.strip("┃").split("┃")]
    assert cells[names.index("sending")] == "3"
    assert f"lease ends at {lease_end.isoformat()[:16]}" in out

    doc = json.loads(cli("--config", str(config), "status", "--format", "json").stdout)
    (sf,) = [c for c in doc["connectors"] if c["name"] == "salesforce"]
    assert sf["queue"]["sending"] == 3
    assert sf["lease_ends_at"].startswith(lease_end.isoformat()[:16])


def test_run_names_rows_held_by_another_senders_lease(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    config, lease_end = _killed_run(sandbox, state_url)
    text = cli("--config", str(config), "run")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "3 rows of salesforce are held by another sender's lease" in text.stdout
    assert lease_end.isoformat()[:16] in text.stdout

    doc = json.loads(cli("--config", str(config), "run", "--format", "json").stdout)
    assert doc["held_by_lease"] == [
        {
            "connector": "salesforce",
            "rows": 3,
            "first_back_at": doc["held_by_lease"][0]["first_back_at"],
            "last_back_at": doc["held_by_lease"][0]["last_back_at"],
        }
    ]
    assert doc["held_by_lease"][0]["last_back_at"].startswith(lease_end.isoformat()[:16])
