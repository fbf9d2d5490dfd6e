"""A real parser for the SOQL subset ga4sync emits, so the sandbox answers like Salesforce.

SELECT f, ... FROM Obj [WHERE cond {AND|OR cond} with parentheses] [ORDER BY f [ASC|DESC], ...]
[LIMIT n]; cond is `field op literal` with = != < <= > >= LIKE, or `field [NOT] IN (...)`.
Literals: 'strings', numbers, true/false/null, datetimes (2024-05-01T00:00:00Z, +hh:mm) and dates.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


class SoqlError(Exception):
    """Carries Salesforce's errorCode (MALFORMED_QUERY or INVALID_FIELD)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?"
    r"(?:Z|[+-]\d{2}:\d{2}))|(?P<date>\d{4}-\d{2}-\d{2})|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


@dataclass
class Token:
    kind: str
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SoqlError(
                "MALFORMED_QUERY", f"unexpected token at position {pos}: {text[pos : pos + 20]!r}"
            )
        kind = m.lastgroup or ""
        raw = m.group(kind)
        value: Any = raw
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "dt":
            value = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        elif kind == "date":
            value = date.fromisoformat(raw)
        elif kind == "num":
            value = float(raw) if "." in raw else int(raw)
        out.append(Token(kind, value, m.start(kind)))
        pos = m.end()
    return out


@dataclass
class Cond:
    field: str
    op: str
    value: Any


@dataclass
class BoolOp:
    op: str  # AND | OR
    items: list[Any]


@dataclass
class Query:
    fields: list[str]
    obj: str
    where: Any
    order: list[tuple[str, bool]]
    limit: int | None


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok and tok.kind == "word" and str(tok.value).upper() in words:
            self.i += 1
            return True
        return False

    def expect_word(self, word: str) -> None:
        if not self.word(word):
            tok = self.peek()
            got = tok.value if tok else "end of query"
            raise SoqlError("MALFORMED_QUERY", f"expected {word}, found {got!r}")

    def ident(self) -> str:
        tok = self.peek()
        if not tok or tok.kind != "word":
            raise SoqlError(
                "MALFORMED_QUERY",
                f"expected a field name, found {tok.value if tok else 'end of query'!r}",
            )
        self.i += 1
        return str(tok.value)

    def punct(self, p: str) -> bool:
        tok = self.peek()
        if tok and tok.kind == "punct" and tok.value == p:
            self.i += 1
            return True
        return False

    def parse(self) -> Query:
        self.expect_word("SELECT")
        fields = [self.ident()]
        while self.punct(","):
            fields.append(self.ident())
        self.expect_word("FROM")
        obj = self.ident()
        where = None
        if self.word("WHERE"):
            where = self.expr()
        order: list[tuple[str, bool]] = []
        if self.word("ORDER"):
            self.expect_word("BY")
            while True:
                name = self.ident()
                desc = False
                if self.word("DESC"):
                    desc = True
                else:
                    self.word("ASC")
                order.append((name, desc))
                if not self.punct(","):
                    break
        limit = None
        if self.word("LIMIT"):
            tok = self.peek()
            if not tok or tok.kind != "num":
                raise SoqlError("MALFORMED_QUERY", "LIMIT needs a number")
            self.i += 1
            limit = int(tok.value)
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {self.peek().value!r}")  # type: ignore[union-attr]
        return Query(fields, obj, where, order, limit)

    def expr(self) -> Any:
        items = [self.term()]
        op = None
        while True:
            if self.word("AND"):
                this = "AND"
            elif self.word("OR"):
                this = "OR"
            else:
                break
            if op and op != this:
                raise SoqlError("MALFORMED_QUERY", "mixing AND and OR needs parentheses")
            op = this
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp(op or "AND", items)

    def term(self) -> Any:
        if self.punct("("):
            inner = self.expr()
            if not self.punct(")"):
                raise SoqlError("MALFORMED_QUERY", "missing )")
            return inner
        name = self.ident()
        if self.word("NOT"):
            self.expect_word("IN")
            return Cond(name, "NOT IN", self.value_list())
        if self.word("IN"):
            return Cond(name, "IN", self.value_list())
        if self.word("LIKE"):
            return Cond(name, "LIKE", self.literal())
        tok = self.peek()
        if not tok or tok.kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"expected an operator after {name}")
        self.i += 1
        op = "!=" if tok.value == "<>" else str(tok.value)
        return Cond(name, op, self.literal())

    def value_list(self) -> list[Any]:
        if not self.punct("("):
            raise SoqlError("MALFORMED_QUERY", "IN needs a list in parentheses")
        values = [self.literal()]
        while self.punct(","):
            values.append(self.literal())
        if not self.punct(")"):
            raise SoqlError("MALFORMED_QUERY", "missing ) after IN list")
        return values

    def literal(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", "expected a value, found end of query")
        self.i += 1
        if tok.kind in ("str", "dt", "date", "num"):
            return tok.value
        if tok.kind == "word" and str(tok.value).lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[str(tok.value).lower()]
        raise SoqlError("MALFORMED_QUERY", f"unexpected value {tok.value!r}")


def parse(text: str) -> Query:
    return _Parser(tokenize(text)).parse()


def _comparable(value: Any, literal: Any) -> tuple[Any, Any]:
    if isinstance(literal, datetime):
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
    elif isinstance(literal, date):
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = date.fromisoformat(value[:10])
    elif isinstance(literal, int | float) and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    return value, literal


def matches(where: Any, record: dict[str, Any]) -> bool:
    if where is None:
        return True
    if isinstance(where, BoolOp):
        results = (matches(item, record) for item in where.items)
        return all(results) if where.op == "AND" else any(results)
    assert isinstance(where, Cond)
    value = record.get(where.field)
    if where.op in ("IN", "NOT IN"):
        inside = any(_eq(value, v) for v in where.value)
        return inside if where.op == "IN" else not inside
    if where.op == "=":
        return _eq(value, where.value)
    if where.op == "!=":
        return not _eq(value, where.value)
    if where.op == "LIKE":
        pattern = "^" + re.escape(str(where.value)).replace("%", ".*").replace("_", ".") + "$"
        return value is not None and re.match(pattern, str(value), re.IGNORECASE) is not None
    if value is None or where.value is None:
        return False
    a, b = _comparable(value, where.value)
    try:
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[where.op])
    except TypeError:
        return False


def _eq(value: Any, literal: Any) -> bool:
    if literal is None:
        return value is None
    if isinstance(literal, str) and isinstance(value, str):
        return (
            value.lower() == literal.lower() if len(literal) not in (15, 18) else value == literal
        )
    a, b = _comparable(value, literal)
    return bool(a == b)


def narrowing(where: Any, indexed: set[str]) -> tuple[str, list[Any]] | None:
    """`(field, values)` when the WHERE requires an indexed field to be one of a few values.

    Only a top-level condition (or one ANDed at the top) qualifies: under OR it would not
    narrow. Lets the sandbox answer per-record queries without scanning every row, as an
    org's Id and parent-id indexes do.
    """
    items = where.items if isinstance(where, BoolOp) and where.op == "AND" else [where]
    for item in items:
        if isinstance(item, Cond) and item.field in indexed:
            if item.op == "=":
                return item.field, [item.value]
            if item.op == "IN":
                return item.field, list(item.value)
    return None


def first_literal(where: Any, test: Any) -> Any:
    """The first literal in WHERE for which `test(field, literal)` holds (IN lists included)."""
    if where is None:
        return None
    if isinstance(where, BoolOp):
        for item in where.items:
            found = first_literal(item, test)
            if found is not None:
                return found
        return None
    values = where.value if isinstance(where.value, list) else [where.value]
    return next((v for v in values if test(where.field, v)), None)


def fields_in(where: Any) -> list[str]:
    if where is None:
        return []
    if isinstance(where, BoolOp):
        return [f for item in where.items for f in fields_in(item)]
    return [where.field]


def sort_key(order: list[tuple[str, bool]]) -> Any:
    """Sort helper honouring ASC/DESC per column; None sorts first like Salesforce's NULLS FIRST."""

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(_Sortable(record.get(name), desc) for name, desc in order)

    return key


class _Sortable:
    __slots__ = ("desc", "value")

    def __init__(self, value: Any, desc: bool) -> None:
        self.value, self.desc = value, desc

    def __lt__(self, other: _Sortable) -> bool:
        a, b = self.value, other.value
        if a == b:
            return False
        if a is None:
            result = True
        elif b is None:
            result = False
        else:
            try:
                result = a < b
            except TypeError:
                result = str(a) < str(b)
        return not result if self.desc else result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Sortable) and self.value == other.value
