"""`ga4sync report` reads well over any period: bars fit the page, the y-axis says what it
counts, money sent is totalled per currency, and every skip reason is explained in words."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.ops.report_html import CHART_WIDTH
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_status import run_scenario

REASONS = ("no_rule", "once_per_record", "no_client_id", "bad_client_id", "too_old")


def _page(config: Path, out: Path, start: str, end: str) -> str:
    args = ["--config", str(config), "report", "--from", start, "--to", end, "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def _svg_widths(html: str) -> list[int]:
    return [int(w) for w in re.findall(r'<svg [^>]*width="(\d+)"', html)]


def test_a_long_report_fits_the_page_labels_its_axis_totals_value_and_explains_reasons(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    sc = run_scenario(sandbox, make_engine, tmp_path)
    sent = sc.engine.store.list_outbox(statuses=[Status.SENT])
    last = max(ensure_utc(r.sent_at).date() for r in sent)

    html = _page(
        sc.config.path,
        tmp_path / "long.html",
        (last - timedelta(days=119)).isoformat(),
        last.isoformat(),
    )
    widths = _svg_widths(html)
    assert widths and max(widths) <= CHART_WIDTH
    assert "<h2>Events sent per week</h2>" in html
    assert "events sent per week</text>" in html  # the y-axis label
    bars = re.findall(r"<title>week of (\d{4}-\d\d-\d\d) ", html)
    assert bars and all(d.count("-") == 2 for d in bars)

    # Value totals: the sum of `value` per currency over the sent payloads.
    expected: dict[str, float] = defaultdict(float)
    for r in sent:
        params = json.loads(r.payload)["event"]["params"]
        if "value" in params:
            expected[params.get("currency", "(none)")] += params["value"]
    assert expected, "the scenario sends money"
    data = json.loads(
        re.search(r'id="report-data">(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    )
    assert data["value_totals"] == {k: round(v, 2) for k, v in expected.items()}
    for currency, total in expected.items():
        assert f"<td>{currency}</td><td class=n>{total:,.2f}</td>" in html

    # A glossary a marketing manager reads: every reason and failure status, in words.
    glossary = html.split("What the reasons and statuses mean", 1)[1]
    for term in (*REASONS, "retry", "unknown", "dead", "invalid"):
        assert f"<tr><th>{term}</th><td>" in glossary

    short = _page(
        sc.config.path,
        tmp_path / "short.html",
        (last - timedelta(days=6)).isoformat(),
        last.isoformat(),
    )
    assert "<h2>Events sent per day</h2>" in short and "events sent per day</text>" in short

    decade = _page(
        sc.config.path,
        tmp_path / "decade.html",
        (last - timedelta(days=3000)).isoformat(),
        last.isoformat(),
    )
    assert max(_svg_widths(decade)) <= CHART_WIDTH and "Events sent per month" in decade
