"""What `run` and `backfill` say: counts that add up, GA4 unreachable, too_old advice that
works as printed, JSON for scripts, progress on a terminal only, hostile CRM text harmless.

Through the real CLI, against the sandbox Salesforce (HTTPS) and GA4, on both backends.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import yaml
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.test_salesforce import PROJECT_MAPPING


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def _now(sandbox: SandboxEnvironment) -> datetime:
    return sandbox.clock.now()


def _won(sandbox: SandboxEnvironment, at: datetime, client: str, **fields: object) -> str:
    data = sandbox.salesforce.data
    stage = str(fields.pop("stage", "Closed Won"))
    oid = data.create_opportunity(
        at - timedelta(hours=1), stage="Prospecting", Amount=100.0, GA_Client_ID__c=client, **fields
    )
    data.move_opportunity(oid, stage, at)
    return oid


def _set_ga4(config: Path, **ga4: object) -> None:
    doc = yaml.safe_load(config.read_text())
    doc["ga4"].update(ga4)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))


# -- 1. the summary adds up -------------------------------------------------------------------
def test_run_summary_counts_add_up_to_the_transitions_seen(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    data.define_object("Project__c", ["Stage__c", "GA_Client_ID__c"], tracked=("Stage__c",))
    mapping = tmp_path / "project.yaml"
    mapping.write_text(PROJECT_MAPPING)
    t0 = _now(sandbox) - timedelta(hours=1)
    for i in range(3):
        pid = data.create_record("Project__c", t0, Stage__c="Draft", GA_Client_ID__c=f"{i}.9")
        data.update_record("Project__c", pid, t0 + timedelta(minutes=i + 1), Stage__c="Live")
    row = {"Field": "Stage__c", "OldValue": "Draft", "NewValue": "Live", "DataType": "Text"}
    for n in (1, 2):  # two malformed history rows: two invalid rows, each counted once
        data.insert_raw("Project__History", {**row, "Id": f"017RAW00000000{n}AAA",
                                              "ParentId": None, "CreatedDate": t0})  # fmt: skip
    config = sandbox.write_config(state_url=state_url, mapping=mapping)

    result = _cli(config, "run", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (capture,) = doc["captures"]
    assert capture["invalid"] == 2
    assert capture["to_send"] == 3
    assert capture["new"] == capture["to_send"] + sum(capture["skipped"].values()) + 2
    assert capture["seen"] == capture["new"] + capture["already_in_outbox"]
    assert doc["delivery"]["sent"] == 3 and doc["delivery"]["invalid"] == 0

    # The table a person reads shows the same numbers: invalid 2, not 4.
    again = _cli(config, "run")
    assert again.exit_code == 0, again.output
    line = next(ln for ln in again.stdout.splitlines() if "salesforce" in ln and "ok" in ln)
    cells = [c.strip() for c in line.strip("│┃ ").split("│")]
    new, already, to_send, skipped, invalid = map(int, cells[2:7])
    assert (new, to_send, skipped, invalid) == (0, 0, 0, 0) and already == capture["seen"]


# -- 2. GA4 unreachable ------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_unreachable(result: Result, endpoint: str, what: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: GA4 at")]
    assert len(lines) == 1, result.stderr
    assert endpoint in lines[0] and what in lines[0] and "nothing was delivered" in lines[0]
    from ga4sync.sandbox.runner import GA4_SECRET

    assert GA4_SECRET not in result.output + result.stderr


def test_ga4_connection_refused_is_one_line_naming_the_endpoint_and_exit_1(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    _won(sandbox, _now(sandbox) - timedelta(hours=1), "1.1")
    config = sandbox.write_config(state_url=state_url)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    _set_ga4(config, endpoint=endpoint)
    result = _cli(config, "run")
    _assert_unreachable(result, endpoint, "cannot connect")
    assert "retry 1" in result.stdout  # the event waits; nothing is lost


def test_ga4_with_an_untrusted_certificate_is_one_line_and_exit_1(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    _won(sandbox, _now(sandbox) - timedelta(hours=1), "1.1")
    config = sandbox.write_config(state_url=state_url)
    endpoint = sandbox.sf_server.url  # HTTPS with the sandbox's own CA, not given to ga4
    assert endpoint.startswith("https://")
    _set_ga4(config, endpoint=endpoint)
    result = _cli(config, "run", "--format", "json")
    _assert_unreachable(result, endpoint.rstrip("/"), "TLS")
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1 and doc["delivery"]["retry"] == 1
    assert doc["ga4_unreachable"]["endpoint"] == endpoint.rstrip("/")
    assert sandbox.ga4.events() == []


# -- 3. too_old advice works as printed --------------------------------------------------------
def _printed_command(output: str, advice_starts: str) -> list[str]:
    """The command on the line after the advice, as a person would copy it."""
    lines = output.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith(advice_starts))
    assert lines[at].endswith("run:")
    command = shlex.split(lines[at + 1])
    assert command[0] == "ga4sync" and "clamp" in command
    return command


def test_too_old_advice_works_as_printed_also_for_rows_skipped_by_earlier_runs(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    now = _now(sandbox)
    old = _won(sandbox, now - timedelta(days=4), "1.1")
    fresh = _won(sandbox, now - timedelta(hours=2), "2.2")
    config = sandbox.write_config(state_url=state_url, initial_lookback="7d")
    first = _cli(config, "run")
    assert first.exit_code == 0, first.output
    assert [e["params"]["transaction_id"] for e in sandbox.ga4.events()] == [fresh]
    command = _printed_command(first.stdout, "too_old 1: ")

    # A later run that is not told to clamp leaves the skipped row alone...
    assert _cli(config, "run").exit_code == 0
    assert len(sandbox.ga4.events()) == 1
    # ...the printed command sends it, clamped, once.
    followed = CliRunner().invoke(main, command[1:])
    assert followed.exit_code == 0, followed.output
    assert "queued again 1" in followed.stdout
    events = sandbox.ga4.events()
    assert [e["params"]["transaction_id"] for e in events] == [fresh, old]
    assert events[1]["params"]["crm_changed_at"].startswith(
        (now - timedelta(days=4)).strftime("%Y-%m-%dT%H")
    )
    assert CliRunner().invoke(main, command[1:]).exit_code == 0
    assert len(sandbox.ga4.events()) == 2  # never twice


def test_backfill_too_old_advice_works_as_printed_after_a_skipping_pass(
    sandbox: SandboxEnvironment, state_url: str
) -> None:
    now = datetime.now(UTC)
    old = _won(sandbox, now - timedelta(days=5), "1.1")
    config = sandbox.write_config(state_url=state_url)
    start, end = (now - timedelta(days=7)).date().isoformat(), now.date().isoformat()
    args = ["--config", str(config), "backfill", "--connector", "salesforce"]
    first = CliRunner().invoke(main, [*args, "--from", start, "--to", end])
    assert first.exit_code == 0, first.output
    assert sandbox.ga4.events() == []
    command = _printed_command(first.stdout, "too_old: ")
    followed = CliRunner().invoke(main, command[1:])
    assert followed.exit_code == 0, followed.output
    assert [e["params"]["transaction_id"] for e in sandbox.ga4.events()] == [old]


# -- 5. JSON summaries ----------------------------------------------------------------------------
def test_backfill_format_json_has_stable_keys(sandbox: SandboxEnvironment, state_url: str) -> None:
    now = datetime.now(UTC)
    _won(sandbox, now - timedelta(hours=3), "1.1")
    config = sandbox.write_config(state_url=state_url)
    start, end = (now - timedelta(days=2)).date().isoformat(), now.date().isoformat()
    result = _cli(config, "backfill", "--connector", "salesforce", "--from", start, "--to", end,
                  "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"connector", "from", "to", "scope", "capture_status", "captured",
                        "already_in_outbox", "sent", "skipped", "failed", "waiting",
                        "requeued_too_old", "interrupted", "ok", "exit_code"}  # fmt: skip
    assert doc["sent"] == 1 and doc["ok"] is True


# -- 6. hostile CRM text ---------------------------------------------------------------------
HOSTILE = "[/]Won[link=https://evil.example]x\x1b]0;pwned\x07"


def test_hostile_stage_names_and_errors_print_literally(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    now = _now(sandbox)
    _won(sandbox, now - timedelta(hours=1), "1.1", stage=HOSTILE)
    mapping = tmp_path / "hostile.yaml"
    mapping.write_text(
        "object: Opportunity\nstage_field: StageName\ndetection: history\n"
        "client_id_field: GA_Client_ID__c\n"
        f"rules:\n  - {{to: {json.dumps(HOSTILE)}, event: close_convert_lead}}\n"
    )
    config = sandbox.write_config(state_url=state_url, mapping=mapping)
    result = _cli(config, "run")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    preview = _cli(config, "mappings", "preview", "--connector", "salesforce", "--since", "1d")
    assert preview.exit_code == 0, preview.output
    assert "[/]Won[link=https://evil.example]" in preview.stdout and "\\x07" in preview.stdout
    assert "\x1b" not in preview.stdout


def test_preview_csv_neutralises_formula_cells(sandbox: SandboxEnvironment) -> None:
    formula = '=HYPERLINK("https://evil.example","x")'
    now = _now(sandbox)
    for i, stage in enumerate([formula, "+1", "-1", "@SUM(A1)", "\tTab", "\rCR"]):
        _won(sandbox, now - timedelta(hours=1, minutes=i), f"{i}.1", stage=stage)
    config = sandbox.write_config()
    result = _cli(config, "mappings", "preview", "--connector", "salesforce", "--since", "1d",
                  "--format", "csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    tos = {r["to"] for r in rows}
    assert "'" + formula in tos and formula not in tos
    assert {"'+1", "'-1", "'@SUM(A1)", "'\tTab", "'\rCR"} <= tos
    for r in rows:
        for value in r.values():
            assert not value or value[0] not in "=+-@\t\r", r


# -- 4. progress only on a terminal ----------------------------------------------------------------
def _run_on_pty(args: list[str], cwd: Path) -> str:
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ga4sync", *args], stdout=follower, stderr=follower,
        stdin=subprocess.DEVNULL, cwd=cwd, env=env,
    )  # fmt: skip
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(leader)
    return out.decode("utf-8", "replace")


def test_run_shows_progress_on_a_terminal_and_never_in_a_pipe(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    sandbox.seed(count=30, seed=5)
    config = sandbox.write_config(state_url=state_url)
    on_terminal = _run_on_pty(["--config", str(config), "run"], tmp_path)
    assert "capture salesforce" in on_terminal and "deliver to GA4" in on_terminal
    assert "GA4: sent" in on_terminal
    piped = subprocess.run(
        [sys.executable, "-m", "ga4sync", "--config", str(config), "run"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "deliver to GA4" not in piped.stdout + piped.stderr
    assert "GA4: sent" in piped.stdout


def test_daemon_logs_one_line_per_scheduled_run_at_its_default_level(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    sandbox.seed(count=5, seed=3)
    config = sandbox.write_config(state_url=state_url)
    doc = yaml.safe_load(config.read_text())
    doc["connectors"][0]["every"] = "1s"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = tmp_path / "daemon.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ga4sync", "--config", str(config), "daemon"],
            stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and log.read_text().count("salesforce: ok;") < 2:
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    runs = [ln for ln in log.read_text().splitlines() if "salesforce: ok; captured" in ln]
    assert len(runs) >= 2, log.read_text()
    assert " INFO " in runs[0] and "GA4 sent" in runs[0]


# -- 7. help texts -----------------------------------------------------------------------------
def _command_paths(group: click.Group, ctx: click.Context, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            paths += _command_paths(command, ctx, [*prefix, name])
        else:
            paths.append([*prefix, name])
    return paths


def test_every_help_text_is_whole_and_names_no_source_code() -> None:
    ctx = click.Context(main)
    paths = _command_paths(main, ctx, [])
    assert ["mappings", "preview"] in paths and ["outbox", "show"] in paths
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        for line in result.output.splitlines()[1:]:  # after "Usage: ... [ARGS]..."
            assert len(line) <= 80, (path, line)
            assert not line.rstrip().endswith("..."), (path, line)  # a cut sentence
            assert ".py" not in line and "sync/" not in line, (path, line)
