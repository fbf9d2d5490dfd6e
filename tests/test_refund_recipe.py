"""docs/mappings.md's refund recipe, run as written: the table of what GA4 gets is true."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mappings.md"


def _recipe() -> str:
    section = DOCS.read_text().split("### A won deal that is lost again: `refund`", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def _events(sandbox: SandboxEnvironment) -> list[tuple[str, float | None]]:
    return [
        (event["name"], event.get("params", {}).get("value"))
        for hit in sandbox.ga4.hits
        for event in hit.body["events"]
    ]


@pytest.mark.parametrize(
    "moves,expected",
    [
        (["Closed Won"], [("purchase", 900.0)]),
        (["Closed Won", "Closed Lost"], [("purchase", 900.0), ("refund", 900.0)]),
        (
            ["Closed Won", "Closed Lost", "Closed Won", "Closed Lost"],
            [("purchase", 900.0), ("refund", 900.0)],
        ),
    ],
    ids=["won", "won-lost", "won-lost-won-lost"],
)
def test_refund_recipe_sends_what_the_docs_table_says(
    sandbox: SandboxEnvironment,
    make_engine: EngineFactory,
    tmp_path: Path,
    moves: list[str],
    expected: list[tuple[str, float]],
) -> None:
    mapping = tmp_path / "refund.yaml"
    mapping.write_text(_recipe())
    data = sandbox.salesforce.data
    now: datetime = sandbox.clock.now()
    start = now - timedelta(hours=2)
    opp = data.create_opportunity(
        start, stage="Prospecting", Amount=900.0, CurrencyIsoCode="EUR", GA_Client_ID__c="7.7"
    )
    for i, stage in enumerate(moves):
        data.move_opportunity(opp, stage, start + timedelta(minutes=10 * (i + 1)))
    engine, _ = make_engine(mapping=mapping)
    report = engine.run_once()
    assert report.ok
    assert _events(sandbox) == expected
    net = sum(v or 0 for name, v in _events(sandbox) if name == "purchase") - sum(
        v or 0 for name, v in _events(sandbox) if name == "refund"
    )
    assert net == (900.0 if moves[-1] == "Closed Won" and len(moves) == 1 else 0)
