"""`ga4sync outbox list|show|resend|discard` and `ga4sync state prune` on a real sandbox run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.cli.outbox_cmd import TABLE_ROWS
from ga4sync.core.model import Status
from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.runner import GA4_SECRET, SandboxEnvironment
from ga4sync.state.store import OutboxRow, StateStore


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_outbox_commands_on_a_run_with_unknowns(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    sandbox.seed(count=30, seed=7)
    config = sandbox.write_config(state_url=state_url)
    sandbox.ga4.set_faults(Faults(reset_after=0.5, seed=3))
    assert cli(config, "run").exit_code in (0, 1)
    sandbox.ga4.set_faults(Faults())

    listed = cli(config, "outbox", "list", "--status", "unknown", "--format", "json")
    assert listed.exit_code == 0, listed.output
    unknown = json.loads(listed.output)
    assert unknown and all(r["status"] == "unknown" for r in unknown)
    table = cli(config, "outbox", "list", "--connector", "salesforce")
    assert table.exit_code == 0 and "unknown" in table.output
    assert cli(config, "outbox", "list", "--connector", "nope").exit_code == 2  # usage error
    assert cli(config, "outbox", "list", "--status", "bogus").exit_code == 2

    # show: the audit trail of one unknown row, secret-free
    key = unknown[0]["key"]
    shown = cli(config, "outbox", "show", key[:12], "--format", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["key"] == key
    assert doc["source_ref"].startswith("OpportunityHistory/")
    assert doc["crm_record"] and doc["mapping"]["sha256"] and doc["mapping"]["path"]
    assert doc["attempt_log"] and doc["attempt_log"][0]["payload_sent"]["events"]
    assert doc["attempt_log"][0]["outcome"] == "unknown"
    text = cli(config, "outbox", "show", key)
    assert text.exit_code == 0 and "CRM history row: OpportunityHistory/" in text.output
    assert GA4_SECRET not in shown.output + text.output
    assert cli(config, "outbox", "show", "deadbeefdeadbeef").exit_code == 1

    # a person checked GA4: resend the first, discard the rest, reasons recorded
    assert cli(config, "outbox", "resend").exit_code == 2
    sent_before = len(sandbox.ga4.events())
    resent = cli(config, "outbox", "resend", key, "--reason", "not in GA4 DebugView")
    assert resent.exit_code == 0 and "queued 1" in resent.output
    rest = [r["key"] for r in unknown[1:]]
    if rest:
        gone = cli(config, "outbox", "discard", "--status", "unknown", "--reason", "in GA4")
        assert gone.exit_code == 0, gone.output
    store = StateStore.open(state_url)
    try:
        (row,) = store.list_outbox(keys=[key])
        assert "not in GA4 DebugView" in row.reason and row.status == "pending"
        for r in store.list_outbox(keys=rest):
            assert r.status == "discarded" and "in GA4" in r.reason
    finally:
        store.close()
    # `discard` needs a reason; nothing left to resend by status
    assert cli(config, "outbox", "discard", "--status", "unknown").exit_code == 2
    assert cli(config, "outbox", "resend", "--status", "unknown").exit_code == 1
    assert len(sandbox.ga4.events()) == sent_before


def test_state_prune_keeps_recent_rows(sandbox: SandboxEnvironment, state_url: str) -> None:
    sandbox.seed(count=10, seed=2)
    config = sandbox.write_config(state_url=state_url)
    assert cli(config, "run").exit_code == 0
    before = StateStore.open(state_url)
    count = len(before.list_outbox())
    before.close()
    pruned = cli(config, "state", "prune", "--older-than", "90d")
    assert pruned.exit_code == 0 and "deleted 0 rows" in pruned.output
    assert cli(config, "state", "prune", "--older-than", "soon").exit_code == 2
    after = StateStore.open(state_url)
    assert len(after.list_outbox()) == count
    after.close()


def test_a_big_outbox_lists_a_screenful_as_a_table_and_everything_as_json(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    now = datetime.now(UTC)
    rows = [
        OutboxRow(
            key=f"{i:064x}",
            connector="salesforce",
            object_type="Opportunity",
            record_id=f"006{i:012d}",
            field="StageName",
            from_value="Prospecting",
            to_value="Closed Won",
            changed_at=now - timedelta(seconds=i),
            detected_by="history",
            status=Status.UNKNOWN if i % 2 else Status.SENT,
            event_name="purchase",
            record={"Id": f"006{i:012d}", "Description": "x" * 500},
        )
        for i in range(TABLE_ROWS + 203)
    ]
    store = StateStore.open(state_url)
    try:
        store.capture(
            connector="salesforce", object_type="Opportunity", rows=rows, watermark=None, now=now
        )
    finally:
        store.close()
    config = sandbox.write_config(state_url=state_url)

    table = cli(config, "outbox", "list")
    assert table.exit_code == 0
    assert f"Outbox (first {TABLE_ROWS} of {len(rows)} rows)" in table.output
    assert f"203 more rows: use --limit {len(rows)} or --format json" in table.output
    listed = cli(config, "outbox", "list", "--format", "json")
    assert listed.exit_code == 0
    doc = json.loads(listed.output)
    assert len(doc) == len(rows) and len({r["key"] for r in doc}) == len(rows)
    assert "crm_record" not in doc[0] and "x" * 500 not in listed.output
    unknown = json.loads(
        cli(config, "outbox", "list", "--status", "unknown", "--format", "json").output
    )
    assert len(unknown) == len(rows) // 2 and {r["status"] for r in unknown} == {"unknown"}
    limited = cli(
        config, "outbox", "list", "--status", "unknown", "--limit", "3", "--format", "json"
    )
    assert [r["key"] for r in json.loads(limited.output)] == [r["key"] for r in unknown[:3]]
    small = cli(config, "outbox", "list", "--limit", "2")
    assert "Outbox (first 2 of" in small.output

    # LIKE wildcards are not key prefixes: `________` must not pick an arbitrary row.
    for wildcard in ("________", "%%%%%%%%"):
        gone = cli(config, "outbox", "discard", wildcard, "--reason", "x")
        assert gone.exit_code == 1 and "no outbox row has this key" in gone.output
