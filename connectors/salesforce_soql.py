"""Building SOQL that Salesforce accepts and that stays inside its request-size limits.

Literals are to the second (the SOQL docs list no fractional form, crm-apis.md §3.1), strings
are quoted with backslash escapes, and `IN (...)` id lists are cut so that the encoded query
string fits the 16 KB limit on URI + headers with room to spare.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Set
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote_plus

MAX_QUERY_BYTES = 12_000
"""Budget for the URL-encoded `q=` parameter: Salesforce refuses URI + headers over 16,384
bytes (help article 000386264), and headers plus the API path take well under 4 KB."""

MAX_IDS_PER_QUERY = 800
"""Upper bound regardless of length, so one answer stays well under a 2,000-row page."""


def soql_datetime(value: datetime) -> str:
    """SOQL datetime literals are unquoted and, per the docs, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_sf_datetime(value: Any) -> datetime:
    """`2024-05-01T10:00:05.000+0000` (or ...Z) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a datetime: {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_sf_date(value: Any) -> datetime | None:
    """A date field (`2024-05-01`) as midnight UTC, or None when empty or not a date."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value[:10]), time(), tzinfo=UTC)
    except ValueError:
        return None


def time_range(field: str, start: datetime, end: datetime | None) -> str:
    """`field >= start [AND field < end]`: the closed lower bound re-reads ties on purpose."""
    where = f"{field} >= {soql_datetime(start)}"
    if end is not None:
        where += f" AND {field} < {soql_datetime(end)}"
    return where


def id_batches(template: str, ids: list[str]) -> Iterator[str]:
    """Queries `template.format(ids=...)` with as many ids each as fit the size budget.

    `template` holds `{ids}` where the comma-separated quoted list goes.
    """
    fixed = len(quote_plus(template.replace("{ids}", "")))
    batch: list[str] = []
    size = fixed
    for record_id in ids:
        quoted = soql_quote(record_id)
        cost = len(quote_plus(quoted + ", "))
        if batch and (size + cost > MAX_QUERY_BYTES or len(batch) >= MAX_IDS_PER_QUERY):
            yield template.replace("{ids}", ", ".join(batch))
            batch, size = [], fixed
        batch.append(quoted)
        size += cost
    if batch:
        yield template.replace("{ids}", ", ".join(batch))


_SELECT_LIST = re.compile(r"^SELECT (?P<fields>.+?) FROM ", re.DOTALL)


def without_select_fields(soql: str, absent: Set[str]) -> str:
    """The query without the SELECT-list entries `absent` (fields this org does not have).

    Every query ga4sync sends starts `SELECT a, b, ... FROM`, and an optional field appears
    only there, so the one place that sends queries can leave it out for every reader."""
    m = _SELECT_LIST.match(soql)
    if not absent or m is None:
        return soql
    kept = [f for f in (x.strip() for x in m.group("fields").split(",")) if f not in absent]
    return f"SELECT {', '.join(kept)} FROM {soql[m.end() :]}"
