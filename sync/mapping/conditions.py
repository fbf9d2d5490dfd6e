"""`when:` conditions: `Field op literal`, parsed once, evaluated without running any code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_COND = re.compile(
    r"^\s*(?P<field>[A-Za-z_][A-Za-z0-9_.]*)\s*"
    r"(?P<op>==|!=|>=|<=|>|<|=|not in|in|is empty|is not empty)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)


class ConditionSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any

    def holds(self, record: dict[str, Any]) -> bool:
        actual = record.get(self.field)
        if self.op == "is empty":
            return actual is None or actual == ""
        if self.op == "is not empty":
            return not (actual is None or actual == "")
        if actual is None or actual == "":
            return False
        if self.op in ("in", "not in"):
            inside = _norm(actual) in {_norm(v) for v in self.value}
            return inside if self.op == "in" else not inside
        if self.op in ("==", "!="):
            same = _norm(actual) == _norm(self.value)
            return same if self.op == "==" else not same
        try:
            a, b = float(actual), float(self.value)
        except (TypeError, ValueError):
            return False
        return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[self.op]


def _norm(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return repr(float(v))
    try:
        return repr(float(str(v)))
    except ValueError:
        return str(v).strip().lower()


def parse_condition(text: str) -> Condition:
    m = _COND.match(text or "")
    if not m:
        raise ConditionSyntaxError(
            f"cannot read condition `{text}`; write `Field op value`, e.g. `Amount > 0` or "
            "`LeadSource in [Web, Phone]` (ops: = != > >= < <= in, not in, is empty, is not empty)"
        )
    field, op, raw = m.group("field"), m.group("op").lower(), m.group("value")
    if op == "=":
        op = "=="
    if op in ("is empty", "is not empty"):
        if raw:
            raise ConditionSyntaxError(f"`{op}` takes no value in `{text}`")
        return Condition(field, op, None)
    if not raw:
        raise ConditionSyntaxError(f"condition `{text}` has no value after `{op}`")
    if op in ("in", "not in"):
        if not (raw.startswith("[") and raw.endswith("]")):
            raise ConditionSyntaxError(
                f"`{op}` needs a list in square brackets in `{text}`, e.g. [Web, Phone]"
            )
        items = [_unquote(p) for p in raw[1:-1].split(",") if p.strip()]
        if not items:
            raise ConditionSyntaxError(f"the list in `{text}` is empty")
        return Condition(field, op, tuple(items))
    value = _unquote(raw)
    if op in (">", ">=", "<", "<="):
        try:
            float(value)
        except ValueError:
            raise ConditionSyntaxError(
                f"`{op}` compares numbers, but `{value}` in `{text}` is not a number"
            ) from None
    return Condition(field, op, value)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s
