"""`ga4sync outbox list|show|resend|discard` and `ga4sync state prune` on a real sandbox run."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from sandbox.ga4 import Faults
from sandbox.runner import GA4_SECRET, SandboxEnvironment
from state.store import StateStore
from sync.cli import main


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
    assert cli(config, "outbox", "list", "--connector", "nope").exit_code == 1
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
        assert "not in GA4 DebugView" in row["reason"] and row["status"] == "pending"
        for r in store.list_outbox(keys=rest):
            assert r["status"] == "discarded" and "in GA4" in r["reason"]
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
    assert pruned.exit_code == 1 and "deleted 0 rows" in pruned.output
    assert cli(config, "state", "prune", "--older-than", "soon").exit_code == 2
    after = StateStore.open(state_url)
    assert len(after.list_outbox()) == count
    after.close()
