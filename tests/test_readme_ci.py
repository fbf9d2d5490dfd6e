"""CI must run exactly what README tells a user to run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    lines = ROOT.joinpath("README.md").read_text().splitlines()
    fences = [i for i, line in enumerate(lines) if line.startswith("```")]
    block = lines[fences[0] + 1 : fences[1]]
    return [line for line in block if line.strip()]


def test_readme_has_exactly_the_two_setup_commands() -> None:
    assert _readme_commands() == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ga4sync demo",
        "python3 -m venv .venv && .venv/bin/pip install '.[test]' "
        "&& .venv/bin/python -m pytest -n auto",
    ]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    ci = ROOT.joinpath(".ci", "run").read_text()
    assert "README.md" in ci and 'bash -c "$test_cmd"' in ci
    assert "pg_ctlcluster --skip-systemctl-redirect" in ci
