"""The sandbox's SOQL subset, and the SOQL ga4sync builds (literals, id batches within limits)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote_plus

import pytest
import requests
from ga4sync.connectors.salesforce_soql import (
    MAX_QUERY_BYTES,
    id_batches,
    parse_sf_date,
    parse_sf_datetime,
    soql_datetime,
    soql_quote,
)
from ga4sync.sandbox import soql
from ga4sync.sandbox.runner import SF_SESSION, SandboxEnvironment
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)


def test_parse_select_where_order_limit() -> None:
    q = soql.parse(
        "SELECT Id, StageName FROM OpportunityHistory WHERE CreatedDate >= 2024-05-01T00:00:00Z "
        "AND OpportunityId IN ('006A', '006B') AND StageName != 'x' "
        "ORDER BY CreatedDate DESC, Id LIMIT 5"
    )
    assert q.fields == ["Id", "StageName"] and q.obj == "OpportunityHistory"
    assert q.order == [("CreatedDate", True), ("Id", False)] and q.limit == 5
    assert soql.fields_in(q.where) == ["CreatedDate", "OpportunityId", "StageName"]
    row = {
        "CreatedDate": datetime(2024, 5, 1, 0, 0, 1, tzinfo=UTC),
        "OpportunityId": "006B",
        "StageName": "y",
    }
    assert soql.matches(q.where, row)
    assert not soql.matches(q.where, {**row, "OpportunityId": "006C"})
    assert not soql.matches(q.where, {**row, "CreatedDate": datetime(2024, 4, 30, tzinfo=UTC)})


def test_literals_offsets_dates_and_escapes() -> None:
    q = soql.parse(
        "SELECT Id FROM Lead WHERE SystemModstamp > 2024-05-01T02:00:00+02:00 "
        "AND ConvertedDate >= 2024-05-01 AND Name = 'O\\'Brien' AND IsConverted = true"
    )
    row = {
        "SystemModstamp": datetime(2024, 5, 1, 0, 0, 1, tzinfo=UTC),
        "ConvertedDate": date(2024, 5, 1),
        "Name": "O'Brien",
        "IsConverted": True,
    }
    assert soql.matches(q.where, row)
    assert not soql.matches(q.where, {**row, "IsConverted": False})


@pytest.mark.parametrize(
    "text",
    [
        "SELECT FROM Opportunity",
        "SELECT Id Opportunity",
        "SELECT Id FROM Opportunity WHERE",
        "SELECT Id FROM Opportunity WHERE A = 1 AND B = 2 OR C = 3",
        "SELECT Id FROM Opportunity LIMIT x",
        "SELECT Id FROM Opportunity WHERE Id IN 'a'",
        "SELECT Id FROM Opportunity WHERE Name = ;",
    ],
)
def test_malformed_queries_are_refused(text: str) -> None:
    with pytest.raises(soql.SoqlError) as err:
        soql.parse(text)
    assert err.value.code == "MALFORMED_QUERY"


def test_narrowing_only_from_top_level_and() -> None:
    indexed = {"Id", "LeadId"}
    q = soql.parse("SELECT Id FROM LeadHistory WHERE LeadId IN ('a', 'b') AND Field = 'Status'")
    assert soql.narrowing(q.where, indexed) == ("LeadId", ["a", "b"])
    q = soql.parse("SELECT Id FROM LeadHistory WHERE LeadId = 'a' OR Field = 'Status'")
    assert soql.narrowing(q.where, indexed) is None


def test_literal_builders_round_trip() -> None:
    at = datetime(2024, 5, 1, 10, 0, 5, 987000, tzinfo=UTC)
    assert soql_datetime(at) == "2024-05-01T10:00:05Z"  # to the second, as SOQL documents
    assert parse_sf_datetime("2024-05-01T10:00:05.000+0000") == at.replace(microsecond=0)
    assert parse_sf_date("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_sf_date(None) is None
    quoted = soql_quote("it's a \\ test")
    q = soql.parse(f"SELECT Id FROM Lead WHERE Name = {quoted}")
    assert soql.matches(q.where, {"Name": "it's a \\ test"})


def test_id_batches_fit_the_uri_limit_and_keep_every_id() -> None:
    ids = [f"006{n:015d}" for n in range(2500)]
    template = "SELECT Id, StageName FROM Opportunity WHERE Id IN ({ids})"
    batches = list(id_batches(template, ids))
    assert len(batches) > 3
    assert all(len(quote_plus(b)) <= MAX_QUERY_BYTES for b in batches)
    seen = [i for b in batches for i in soql.parse(b).where.value]
    assert seen == ids


def _client(sandbox: SandboxEnvironment) -> Salesforce:
    session = requests.Session()
    session.verify, session.trust_env = str(sandbox.ca_file), False
    return Salesforce(session_id=SF_SESSION, instance_url=sandbox.sf_server.url, session=session)


def test_sandbox_errors_in_salesforce_shape(sandbox: SandboxEnvironment) -> None:
    sf = _client(sandbox)
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.query("SELECT Id FROM Opportunity WHERE")
    assert _first_error(bad.value)["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as field:
        sf.query("SELECT Id, Nope__c FROM Opportunity")
    assert _first_error(field.value)["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope__c' on entity 'Opportunity'" in str(
        _first_error(field.value)["message"]
    )
    sandbox.salesforce.allow_calls(0)
    with pytest.raises(SalesforceRefusedRequest) as limit:
        sf.query("SELECT Id FROM Opportunity")
    assert _first_error(limit.value)["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def _first_error(exc: SalesforceError) -> dict[str, object]:
    """Salesforce error bodies are JSON arrays; simple-salesforce keeps the parsed list."""
    assert isinstance(exc.content, list) and isinstance(exc.content[0], dict)
    return exc.content[0]


def test_sandbox_pages_with_locators_and_limit_header(sandbox: SandboxEnvironment) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    for i in range(450):
        data.create_opportunity(now - timedelta(seconds=i), stage="Prospecting")
    sf = _client(sandbox)
    first = sf.query(
        "SELECT Id, CreatedDate FROM Opportunity ORDER BY CreatedDate, Id",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert first["totalSize"] == 450 and len(first["records"]) == 200 and not first["done"]
    assert first["nextRecordsUrl"].endswith("-200")
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(rest["records"]) == 200
    stamps = [r["CreatedDate"] for r in first["records"] + rest["records"]]
    assert stamps == sorted(stamps)
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, sandbox.salesforce.daily_limit)
