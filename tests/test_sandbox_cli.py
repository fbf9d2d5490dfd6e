"""README's "try your mappings" path, run as a new user runs it: the printed commands, verbatim.

`ga4sync sandbox` runs until stopped and prints a config and the command to try; those
printed paths must read back right from the folder it was started in and from any other.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
GA4SYNC = str(Path(sys.executable).parent / "ga4sync")
STARTUP_TIMEOUT = 120  # generous: a loaded machine only makes start-up slower


def _readme_sandbox_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try your mappings without a CRM", 1)[1]
    block = section.split("```", 2)[1]
    (line,) = [ln for ln in block.splitlines() if ln.strip()]
    return line.strip()


def _fresh_folder(tmp_path: Path) -> Path:
    """What a user has after cloning: the scenarios and the mapping files they edit."""
    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "sandbox" / "scenarios", work / "sandbox" / "scenarios")
    shutil.copytree(ROOT / "mappings", work / "mappings", ignore=shutil.ignore_patterns("*.py"))
    return work


class RunningSandbox:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc, self.lines = proc, lines

    def printed(self, label: str) -> str:
        for line in self.lines:
            if line.startswith(label):
                return line[len(label) :].strip()
        raise AssertionError(f"sandbox did not print {label!r}:\n" + "\n".join(self.lines))


def _start(command: str, cwd: Path) -> RunningSandbox:
    args = command.split()
    assert args[0].endswith("ga4sync"), command
    proc = subprocess.Popen(
        [GA4SYNC, *args[1:]],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return RunningSandbox(proc, lines)
    proc.kill()
    raise AssertionError("sandbox did not come up:\n" + "\n".join(lines))


@pytest.fixture
def sandbox_process() -> Iterator[list[RunningSandbox]]:
    started: list[RunningSandbox] = []
    yield started
    for s in started:
        s.proc.send_signal(signal.SIGTERM)
        try:
            s.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            s.proc.kill()


def _run_printed(sandbox: RunningSandbox, cwd: Path) -> subprocess.CompletedProcess[str]:
    try_line = sandbox.printed("Try:")
    args = try_line.split()
    assert args[0] == "ga4sync", try_line
    return subprocess.run(
        [GA4SYNC, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_readme_sandbox_commands_work_verbatim_from_a_fresh_folder_and_another_folder(
    tmp_path: Path, sandbox_process: list[RunningSandbox]
) -> None:
    work = _fresh_folder(tmp_path)
    running = _start(_readme_sandbox_command(), work)
    sandbox_process.append(running)

    first = _run_printed(running, work)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr

    # The same config from another folder: every path in it reads back as written.
    config = (work / running.printed("Ready-to-use config:")).resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = subprocess.run(
        [GA4SYNC, "--config", str(config), "run"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr

    hits_url = re.search(r"hits: (\S+)\)", " ".join(running.lines))
    assert hits_url is not None
    hits = requests.get(hits_url.group(1), timeout=30).json()["hits"]
    assert hits, "GA4 sandbox received nothing"
    # The user's own mapping files are the ones used, not the copy inside site-packages.
    assert running.printed("Mapping file used:") == str(
        (work / "mappings" / "salesforce_opportunity.yaml").resolve()
    )


def test_an_edit_to_the_users_mapping_takes_effect(
    tmp_path: Path, sandbox_process: list[RunningSandbox]
) -> None:
    work = _fresh_folder(tmp_path)
    mapping = work / "mappings" / "salesforce_opportunity.yaml"
    mapping.write_text(mapping.read_text().replace("event: qualify_lead", "event: qualified_edit"))
    running = _start(_readme_sandbox_command(), work)
    sandbox_process.append(running)
    result = _run_printed(running, work)
    assert result.returncode == 0, result.stdout + result.stderr
    hits_url = re.search(r"hits: (\S+)\)", " ".join(running.lines))
    assert hits_url is not None
    names = {
        event["name"]
        for hit in requests.get(hits_url.group(1), timeout=30).json()["hits"]
        for event in hit["body"]["events"]
    }
    assert "qualified_edit" in names and "qualify_lead" not in names


def test_a_scenario_with_hubspot_deals_gets_a_hubspot_connector(
    tmp_path: Path, sandbox_process: list[RunningSandbox]
) -> None:
    work = _fresh_folder(tmp_path)
    scenario = work / "deals.yaml"
    scenario.write_text(
        "hubspot:\n"
        "  deals:\n"
        "    - name: Acme\n"
        "      amount: 1500\n"
        "      currency: USD\n"
        '      client_id: "1234567890.1700000000"\n'
        "      stages:\n"
        "        - {at: -5h, stage: appointmentscheduled}\n"
        "        - {at: -2h, stage: closedwon}\n"
    )
    running = _start(f"ga4sync sandbox --scenario {scenario.name}", work)
    sandbox_process.append(running)
    config_text = (work / running.printed("Ready-to-use config:")).read_text()
    assert "type: hubspot" in config_text
    result = _run_printed(running, work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hubspot_deals" in result.stdout


@pytest.mark.parametrize(
    "body,expected",
    [
        (
            "salesforce:\n  opportunities:\n    - name: A\n      stgae: x\n"
            "      stages: [{at: -1h, stage: Prospecting}]\n",
            r"bad\.yaml:4:7: .*stgae",
        ),
        ("salesforce:\n  opportunites: []\n", r"bad\.yaml:2:3: .*opportunites"),
        (
            "salesforce:\n  opportunities:\n    - name: A\n"
            "      stages: [{at: yesterday, stage: Prospecting}]\n",
            r"bad\.yaml:4:.*`yesterday` is neither an ISO time",
        ),
        ("salesforce:\n  opportunities: [\n", r"bad\.yaml:\d+:\d+: "),
        (
            "hubspot:\n  deals:\n    - name: A\n      stages:\n"
            "        - {at: -1h, stage: Closed Won}\n",
            r"bad\.yaml:5:\d+: hubspot\.deals\[0\]\.stages\[0\]\.stage: `Closed Won` is not a "
            r"stage id",
        ),
    ],
    ids=["misspelt-key", "misspelt-section", "bad-time", "broken-yaml", "unknown-stage"],
)
def test_a_scenario_with_a_mistake_is_one_line_with_file_and_line(
    tmp_path: Path, body: str, expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text(body)
    result = subprocess.run(
        [GA4SYNC, "sandbox", "--scenario", "bad.yaml", "--dir", "sbx"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert errors, result.stderr
    assert re.search(expected, errors[0]), errors
