"""HubSpot CRM search semantics: filterGroups (OR of ANDs), the 13 operators, one sort.

Pure functions over `HubspotData`, so the server module only does HTTP. A query narrows by the
modified-time index first when every filter group bounds the modified property (the connector's
queries always do), which keeps a 25,000-record window cheap on a 100,000-record account.
"""

from __future__ import annotations

import bisect
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ga4sync.sandbox.hubspot_data import HsRecord, HubspotData, modified_property, to_ms

OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25


class QueryError(ValueError):
    """A request HubSpot answers with 400 VALIDATION_ERROR."""


@dataclass(frozen=True)
class Filter:
    prop: str
    op: str
    value: Any = None
    high: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Sort:
    prop: str
    descending: bool = False


def parse_filter_groups(raw: Any) -> list[list[Filter]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise QueryError("filterGroups must be a list")
    if len(raw) > MAX_GROUPS:
        raise QueryError(f"Too many filter groups: {len(raw)} (max {MAX_GROUPS})")
    groups: list[list[Filter]] = []
    total = 0
    for group in raw:
        filters = (group or {}).get("filters") or []
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise QueryError(f"Too many filters in a group: {len(filters)}")
        total += len(filters)
        parsed = []
        for f in filters:
            op = str(f.get("operator", "EQ")).upper()
            if op not in OPERATORS:
                raise QueryError(f"Unknown operator {op}")
            if not f.get("propertyName"):
                raise QueryError("filter without propertyName")
            parsed.append(
                Filter(
                    prop=str(f["propertyName"]),
                    op=op,
                    value=f.get("value"),
                    high=f.get("highValue"),
                    values=tuple(f.get("values") or ()),
                )
            )
        groups.append(parsed)
    if total > MAX_FILTERS:
        raise QueryError(f"Too many filters: {total} (max {MAX_FILTERS})")
    return groups


def parse_sorts(raw: Any) -> list[Sort]:
    out: list[Sort] = []
    for item in raw or []:
        if isinstance(item, str):
            out.append(Sort(item.lstrip("-"), item.startswith("-")))
        elif isinstance(item, dict) and item.get("propertyName"):
            out.append(
                Sort(str(item["propertyName"]), str(item.get("direction")).upper() == "DESCENDING")
            )
        else:
            raise QueryError(f"bad sort {item!r}")
    return out[:1]


def comparable(kind: str, raw: Any) -> Any:
    """A property or filter value turned into something ordered the way HubSpot orders it."""
    if raw is None:
        return None
    text = str(raw).strip()
    if kind == "datetime":
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise QueryError(f"{text!r} is not a valid datetime") from None
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise QueryError(f"{text!r} is not a number") from None
    return text.lower()


def _holds(data: HubspotData, object_type: str, props: dict[str, str | None], f: Filter) -> bool:
    kind = data.property_type(object_type, f.prop)
    raw = props.get(f.prop)
    if f.op == "HAS_PROPERTY":
        return raw not in (None, "")
    if f.op == "NOT_HAS_PROPERTY":
        return raw in (None, "")
    if raw in (None, ""):
        return f.op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
    have = comparable(kind, raw)
    if f.op in ("IN", "NOT_IN"):
        inside = have in {comparable(kind, v) for v in f.values}
        return inside if f.op == "IN" else not inside
    if f.op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = str(f.value or "").lower()
        tokens = str(raw).lower().split()
        found = any(fnmatch.fnmatchcase(t, pattern) for t in tokens) or fnmatch.fnmatchcase(
            str(raw).lower(), pattern
        )
        return found if f.op == "CONTAINS_TOKEN" else not found
    want = comparable(kind, f.value)
    if f.op == "BETWEEN":
        high = comparable(kind, f.high)
        return bool(want <= have <= high)
    checks = {
        "EQ": lambda: have == want,
        "NEQ": lambda: have != want,
        "LT": lambda: have < want,
        "LTE": lambda: have <= want,
        "GT": lambda: have > want,
        "GTE": lambda: have >= want,
    }
    return bool(checks[f.op]())


def _modified_bounds(object_type: str, groups: list[list[Filter]]) -> tuple[int, int] | None:
    """[low, high] in ms covering every group, when each group bounds the modified property."""
    prop = modified_property(object_type)
    lows, highs = [], []
    for group in groups:
        low, high = None, None
        for f in group:
            if f.prop != prop:
                continue
            v = comparable("datetime", f.value) if f.value is not None else None
            if f.op in ("GTE", "GT", "EQ", "BETWEEN") and v is not None:
                low = v if low is None else max(low, v)
            if f.op in ("LTE", "LT", "EQ") and v is not None:
                high = v if high is None else min(high, v)
            if f.op == "BETWEEN" and f.high is not None:
                hv = comparable("datetime", f.high)
                high = hv if high is None else min(high, hv)
        if low is None and high is None:
            return None
        lows.append(low if low is not None else -(2**62))
        highs.append(high if high is not None else 2**62)
    if not lows:
        return None
    return min(lows), max(highs)


_TIME_OPS: dict[str, Callable[[int, int], bool]] = {
    "GTE": int.__ge__,
    "GT": int.__gt__,
    "LT": int.__lt__,
    "LTE": int.__le__,
    "EQ": int.__eq__,
}


def _time_only(
    object_type: str, groups: list[list[Filter]]
) -> list[list[tuple[Callable[[int, int], bool], int]]] | None:
    """The groups as (comparison, ms) tests on the modified time, when they filter on nothing
    else (the connector's queries): the same answers as `_holds`, without parsing every
    record's value."""
    prop = modified_property(object_type)
    out: list[list[tuple[Callable[[int, int], bool], int]]] = []
    for group in groups:
        tests = []
        for f in group:
            if f.prop != prop or f.op not in _TIME_OPS or f.value is None:
                return None
            tests.append((_TIME_OPS[f.op], int(comparable("datetime", f.value))))
        out.append(tests)
    return out or None


def run_search(
    data: HubspotData,
    object_type: str,
    groups: list[list[Filter]],
    sorts: list[Sort],
    now: datetime,
) -> list[str]:
    """Ids of the matching, unarchived records in result order, as the index sees them at `now`:
    filtered and sorted on each record's newest *visible* version, which can be older than the
    record itself (the answer then carries the newer properties, out of order)."""
    with data.lock:
        index = data.by_modified(object_type)
        bounds = _modified_bounds(object_type, groups)
        if bounds is not None:
            lo = bisect.bisect_left(index, (bounds[0], -1, ""))
            hi = bisect.bisect_right(index, (bounds[1], 2**62, "~"))
            candidates = index[lo:hi]
        else:
            candidates = index
        table = data.objects.get(object_type, {})
        on_time = _time_only(object_type, groups)
        matched: list[tuple[HsRecord, dict[str, str | None]]] = []
        for ms, _, rid in candidates:
            record = table[rid]
            versions = record.versions
            version = versions[0] if len(versions) == 1 else record.indexed(now)
            if version is None or version.visible_at > now or version.modified_ms != ms:
                continue  # not indexed yet, or this entry is a version search no longer sees
            if record.archived:
                continue
            props = version.properties
            if on_time is not None:
                if any(all(compare(ms, want) for compare, want in g) for g in on_time):
                    matched.append((record, props))
            elif not groups or any(
                all(_holds(data, object_type, props, f) for f in g) for g in groups
            ):
                matched.append((record, props))
        if sorts and not (
            sorts[0].prop == modified_property(object_type) and not sorts[0].descending
        ):
            sort = sorts[0]
            kind = data.property_type(object_type, sort.prop)

            def key(item: tuple[HsRecord, dict[str, str | None]]) -> tuple[int, Any, int]:
                v = comparable(kind, item[1].get(sort.prop))
                return (1 if v is None else 0, v if v is not None else 0, _num(item[0].id))

            present = [m for m in matched if m[1].get(sort.prop) is not None]
            missing = [m for m in matched if m[1].get(sort.prop) is None]
            present.sort(key=key, reverse=sort.descending)
            missing.sort(key=lambda m: _num(m[0].id))
            matched = present + missing
        elif not sorts:
            matched.sort(key=lambda m: _num(m[0].id))
        return [record.id for record, _ in matched]


def _num(rid: str) -> int:
    return int(rid) if rid.isdigit() else 0
