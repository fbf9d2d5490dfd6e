"""`ga4sync report`: the page opens on its own and its embedded figures match the state store."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.core.clock import ensure_utc
from ga4sync.core.model import Status
from ga4sync.sandbox.ga4 import Faults
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory
from tests.test_status import run_scenario


class PageReader(HTMLParser):
    """Collects what a browser would load or run: the data script, scripts, links, svgs."""

    def __init__(self) -> None:
        super().__init__()
        self.data_json: str | None = None
        self.in_data = False
        self.tags: Counter[str] = Counter()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        attr = dict(attrs)
        for name in ("src", "href"):
            if attr.get(name):
                self.external.append(f"{tag} {name}={attr[name]}")
        if tag == "link":
            self.external.append("link")
        if tag == "script":
            assert attr.get("type") == "application/json", "no script may run"
            self.in_data = attr.get("id") == "report-data"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_data = False

    def handle_data(self, data: str) -> None:
        if self.in_data:
            self.data_json = (self.data_json or "") + data


def _report(
    config_path: Path, out: Path, start: str, end: str, *, charts: int = 4
) -> dict[str, Any]:
    args = ["--config", str(config_path), "report", "--from", start, "--to", end]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in " ".join(result.output.split())
    page = PageReader()
    page.feed(out.read_text(encoding="utf-8"))
    page.close()
    assert page.external == []
    assert page.tags["svg"] == charts  # events per day, freshness, windows, skips
    assert page.data_json is not None
    return json.loads(page.data_json)  # type: ignore[no-any-return]


def test_report_page_data_matches_the_state_store(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    sc = run_scenario(sandbox, make_engine, tmp_path)
    store = sc.engine.store
    # A later move meets a failing GA4: it waits in retry, and the attempt is on record.
    data = sandbox.salesforce.data
    oid = data.create_opportunity(
        sandbox.clock.now() - timedelta(minutes=30), stage="Prospecting", GA_Client_ID__c="9.9"
    )
    data.move_opportunity(oid, "Closed Lost", sandbox.clock.now() - timedelta(minutes=10))
    sandbox.ga4.set_faults(Faults(status_500=1.0))
    assert sc.engine.run_once().delivery.retry == 1
    sandbox.ga4.set_faults(Faults())

    sent = store.list_outbox(statuses=[Status.SENT])
    days = sorted({ensure_utc(r.sent_at).date() for r in sent})
    start = days[0] - timedelta(days=2)
    doc = _report(sc.config.path, tmp_path / "r.html", start.isoformat(), days[-1].isoformat())

    assert doc["period_from"] == start.isoformat()
    assert len(doc["days"]) == (days[-1] - start).days + 1
    per_day = Counter(
        (ensure_utc(r.sent_at).date().isoformat(), r.connector, r.event_name) for r in sent
    )
    assert {(d["day"], d["connector"], d["event"]): d["count"] for d in doc["events_per_day"]} == (
        dict(per_day)
    )
    assert doc["totals"]["sent"] == len(sent) == 3
    skipped = store.list_outbox(statuses=[Status.SKIPPED])
    reasons = Counter((r.connector, r.reason.split(":", 1)[0]) for r in skipped)
    assert {(s["connector"], s["reason"]): s["count"] for s in doc["skips"]} == dict(reasons)
    assert reasons[("salesforce", "no_client_id")] == 1
    assert doc["totals"]["skipped"] == len(skipped)
    (failure,) = doc["failures"]
    assert (failure["connector"], failure["status"], failure["count"]) == ("salesforce", "retry", 1)
    (attempt,) = doc["failed_attempts"]
    assert (attempt["outcome"], attempt["http_status"], attempt["count"]) == ("retry", 500, 1)
    lags = sorted((ensure_utc(r.sent_at) - ensure_utc(r.changed_at)).total_seconds() for r in sent)
    assert doc["freshness"]["events"] == 3
    assert doc["freshness"]["p50_s"] == pytest.approx(statistics.median(lags))
    assert doc["freshness"]["max_s"] == pytest.approx(lags[-1])
    assert sum(doc["freshness"]["histogram"].values()) == 3
    assert doc["freshness"]["histogram"]["24-72 h"] == 1
    assert doc["windows"] == {"salesforce": {"within_24h": 2, "within_72h": 1, "too_old": 0}}
    assert doc["session_joinable"] == {"salesforce": 1}

    # A period with nothing in it is an empty report, not an error.
    later = days[-1] + timedelta(days=10)
    empty = _report(
        sc.config.path, tmp_path / "e.html", later.isoformat(), later.isoformat(), charts=0
    )
    assert empty["totals"] == {"sent": 0} and empty["events_per_day"] == []


def test_report_text_is_escaped_and_secret_free(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    hostile = "</script><b>x"
    oid = data.create_opportunity(
        now - timedelta(hours=2),
        stage="Prospecting",
        GA_Client_ID__c="1.2",
        CurrencyIsoCode=hostile,
        Amount=5.0,
    )
    data.move_opportunity(oid, "Closed Won", now - timedelta(hours=1))
    engine, config = make_engine()
    engine.run_once()
    day = ensure_utc(engine.store.list_outbox()[0].created_at).date().isoformat()
    out = tmp_path / "r.html"
    doc = _report(config.path, out, day, day, charts=1)  # skips only: nothing was sent
    (failure,) = doc["failures"]
    assert failure["status"] == "invalid"
    assert hostile in failure["example"]  # the JSON survived its script element intact
    html = out.read_text()
    assert "&lt;/script&gt;&lt;b&gt;x" in html
    assert "<b>x" not in html
    assert "sandbox-ga4-api-secret" not in html
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)


def test_report_refuses_a_backwards_period(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    _, config = make_engine()
    args = ["--config", str(config.path), "report", "--from", "2026-03-05", "--to", "2026-03-01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--to is before --from" in result.output


def test_report_dates_and_out_path_are_checked_before_anything_is_written(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    _, config = make_engine()

    def report(*args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(config.path), "report", *args])

    period = ["--from", "2026-03-01", "--to", "2026-03-02"]
    for start in ("2026-02-30", "yesterday", "2026-3-1x"):
        result = report("--from", start, "--to", "2026-03-01")
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    missing = report(*period, "--out", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert missing.exit_code == 2, missing.output
    assert "does not exist; create it first" in missing.output
    assert not isinstance(missing.exception, OSError)
    empty = report("--from", "2030-01-01", "--to", "2030-01-01", "--out", str(tmp_path / "e.html"))
    assert empty.exit_code == 0, empty.output
    assert "sent 0" in empty.output and (tmp_path / "e.html").read_text().startswith("<!")
