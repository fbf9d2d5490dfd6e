"""Salesforce answers recorded by others (tests/contracts/salesforce/README.md), replayed byte for
byte through the sandbox to the real simple-salesforce and ga4sync's connector (issue 12 §4).

The sandbox's own shapes were written by ga4sync's authors; these were not, so a belief both
share about Salesforce (how paging ends, what the limit header looks like, what an expired
session says) is checked against what Salesforce's documentation and others' tests show.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ga4sync.connectors.errors import UnknownCrmField
from ga4sync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from ga4sync.core.errors import ConnectorError
from ga4sync.mapping.load import load_mapping
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.pipeline.fetch_spec import spec_of
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory

CONTRACTS = Path(__file__).parent / "contracts" / "salesforce"


def _recorded(name: str) -> bytes:
    return (CONTRACTS / name).read_bytes()


def _without_elision(body: bytes) -> bytes:
    """Salesforce's documentation elides further records as `...`; the one change made before
    serving (README): the elision goes, every other byte stays."""
    return body.replace(b"},\n    ...\n  ]", b"}\n  ]").replace(b"[...]", b"[]")


def _connector(sandbox: SandboxEnvironment, tmp_path: Path, **auth: Any) -> SalesforceConnector:
    token = tmp_path / "session"
    token.write_text("sandbox-session\n")
    settings = SalesforceSettings.model_validate(
        {
            "name": "sf",
            "mapping": "m.yaml",
            "auth": auth or {"method": "session", "session_id": {"file": str(token)}},
            "instance_url": sandbox.sf_server.url,
            "login_url": f"{sandbox.sf_server.url}/login",
            "ca_file": str(sandbox.ca_file),
        }
    )
    mapping = load_mapping(MAPPINGS_DIR / "salesforce_opportunity.yaml").model
    return SalesforceConnector(settings, spec=spec_of(mapping))


def test_documented_paging_is_followed_to_done_and_the_limit_header_read(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    first = _without_elision(_recorded("query_first_page.txt"))
    last = _without_elision(_recorded("query_more_last_page.txt"))
    assert json.loads(first)["done"] is False and json.loads(last)["done"] is True
    headers = json.loads(_recorded("limit_info_per_app.headers.json"))
    sandbox.salesforce.replay(200, first, headers)
    sandbox.salesforce.replay(200, last)
    connector = _connector(sandbox, tmp_path)
    try:
        pages = list(connector.pages("SELECT Id, Name FROM Contact"))
    finally:
        connector.close()
    assert [[r["Id"] for r in page] for page in pages] == [["003RO0000035WQgYAM"], []]
    # The locator was requested exactly as Salesforce wrote it, and nothing after `done`.
    locator = "/services/data/v66.0/query/01gRO0000016PIAYA2-500"
    assert sandbox.salesforce.requests[-1] == f"GET {locator}"
    assert sandbox.salesforce.data_requests() == 2
    # `api-usage=25/5000; per-app-api-usage=17/250(appName=sample-app)`: the org's figure.
    assert (connector.usage.used, connector.usage.limit) == (25, 5000)


def test_recorded_invalid_session_id_says_a_session_id_cannot_be_renewed(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    sandbox.salesforce.replay(401, _recorded("401_invalid_session_id.json"))
    connector = _connector(sandbox, tmp_path)
    try:
        with pytest.raises(ConnectorError) as err:
            list(connector.pages("SELECT Id FROM Opportunity"))
    finally:
        connector.close()
    text = str(err.value)
    assert "INVALID_SESSION_ID: Session expired or invalid" in text
    assert "cannot be renewed" in text and "jwt" in text


def test_recorded_invalid_field_names_the_field_and_object_salesforce_refused(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """Salesforce echoes the query, a caret line and `ERROR at Row:1:Column:35` before the
    sentence that matters; the connector finds the field and object in it, asks the org's
    FieldDefinition whether the field exists at all, and says which fix applies."""
    sandbox.salesforce.replay(400, _recorded("400_invalid_field.json"))
    connector = _connector(sandbox, tmp_path)
    try:
        with pytest.raises(UnknownCrmField) as err:
            list(connector.pages("SELECT Id, SF_date__c FROM Lead"))
    finally:
        connector.close()
    assert (err.value.object_type, err.value.field) == ("Lead", "SF_date__c")
    assert "Salesforce has no field `SF_date__c` on Lead in this org" in str(err.value)
    assert "Row:1" not in str(err.value)  # the echoed query stays out of the message


def test_recorded_total_requests_403_stops_the_run_as_quota_and_the_next_run_resumes(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    """A real org's answer once its daily API requests were spent (logged by a browser
    extension): 403 `REQUEST_LIMIT_EXCEEDED` / `TotalRequests Limit exceeded.`. Waiting
    seconds does not help, so the call is not retried: the run stops as `quota` after the
    last committed page, and the next run resumes from the watermark."""
    data = sandbox.salesforce.data
    t0 = sandbox.clock.now().replace(microsecond=0) - timedelta(hours=1)
    oid = data.create_opportunity(t0, stage="Prospecting", GA_Client_ID__c="1.1")
    data.move_opportunity(oid, "Closed Won", t0 + timedelta(minutes=5))
    sandbox.salesforce.replay(403, _recorded("403_total_requests.json"))
    engine, _ = make_engine()
    report = engine.capture("salesforce")
    assert report.status == "quota"
    assert "TotalRequests Limit exceeded." in (report.error or "")
    assert "the next run resumes there" in (report.error or "")
    assert report.api_calls == 1 == sandbox.salesforce.data_requests()  # not retried
    assert engine.store.list_outbox() == []
    again = engine.capture("salesforce")
    assert again.status == "ok"
    assert [r.to_value for r in engine.store.list_outbox()] == ["Prospecting", "Closed Won"]
