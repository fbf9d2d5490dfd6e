"""Helpers for CSV connector tests: a sandbox config with a `type: csv` connector, fresh files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from ga4sync.connectors.csv import CsvConnector, CsvSettings
from ga4sync.core.model import RejectedRecord, StageTransition, TimeWindow
from ga4sync.mapping.model import MappingFile
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.pipeline.fetch_spec import spec_of
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

DATA = Path(__file__).parent / "data" / "csv"
POS_MAPPING = DATA / "pos_mapping.yaml"
HEADER = "order_id,type,sold_at,amount,ga_client_id,ga_session_id,note"
BERLIN = ZoneInfo("Europe/Berlin")
EVERYTHING = TimeWindow(start=datetime(2000, 1, 1, tzinfo=UTC))


def read_csv_files(
    base_dir: Path, path: str, mapping: MappingFile, **settings: object
) -> tuple[list[StageTransition], list[RejectedRecord], list[str]]:
    """Everything a CSV connector reads from `path` (a glob under base_dir), straight from it."""
    conn = CsvConnector(
        CsvSettings(name="pos", mapping="m.yaml", path=path, **settings),  # type: ignore[arg-type]
        spec=spec_of(mapping),
        base_dir=base_dir,
    )
    transitions: list[StageTransition] = []
    rejected: list[RejectedRecord] = []
    for page in conn.fetch_transitions(EVERYTHING):
        transitions += page.transitions
        rejected += page.rejected
    return transitions, rejected, conn.warnings


def berlin(when: datetime) -> str:
    """A UTC time as the POS export writes it: Berlin wall clock, `%d.%m.%Y %H:%M`."""
    return when.astimezone(BERLIN).strftime("%d.%m.%Y %H:%M")


def csv_config(
    sandbox: SandboxEnvironment,
    state_url: str,
    *,
    path: str = "inbox/*.csv",
    mapping: Path = POS_MAPPING,
    **settings: Any,
) -> Path:
    """The sandbox config with only a CSV connector named `pos` reading `path`.

    `ready: renamed` unless a test says otherwise: these tests write each file whole before
    a run, as an exporter that moves finished files into place does; tests of the other
    `ready:` rules set them.
    """
    settings.setdefault("ready", "renamed")
    written = sandbox.write_config(state_url=state_url, salesforce=False)
    doc = yaml.safe_load(written.read_text())
    doc["connectors"] = [
        {"name": "pos", "type": "csv", "mapping": str(mapping), "path": path, **settings}
    ]
    written.write_text(yaml.safe_dump(doc, sort_keys=False))
    (written.parent / "inbox").mkdir(exist_ok=True)
    return written


def csv_engine(
    sandbox: SandboxEnvironment, state_url: str, **settings: Any
) -> tuple[Engine, Config]:
    """An Engine on the sandbox clock (rows are timed against it), the caller closes it."""
    config = load_config(csv_config(sandbox, state_url, **settings))
    return Engine(config, StateStore.open(config.state_url()), clock=sandbox.clock), config


def write_rows(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
