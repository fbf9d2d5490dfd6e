"""Cells of a CSV row: text as written, and numbers in the notation the mapping reads.

Pure functions, so the rules for what a cell means can be tested without files.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sync.mapping.model import FieldParam, MappingFile

DECIMAL_COMMA = re.compile(r",\d{1,2}$")
"""`19,90`, `1.234,5`: a comma followed by one or two final digits is never a thousands
separator."""


def number_columns(mapping: MappingFile) -> list[str]:
    """Columns the mapping reads as numbers (params and user properties of type number)."""
    specs = [*mapping.user_properties.values()]
    for rule in mapping.rules:
        specs.extend(rule.params.values())
    return sorted({s.field for s in specs if isinstance(s, FieldParam) and s.type == "number"})


def read_number(text: str, decimal: str) -> str | None:
    """A number cell in the mapping's notation (`1234.56`); None when it is ambiguous.

    With `decimal: ","`, `1.234,56` -> `1234.56`. With the default `.`, `19,90` is refused
    (None): the mapping's number conversion would drop the comma and send 1990.
    """
    if decimal == ",":
        return text.replace(".", "").replace(" ", "").replace(",", ".")
    return None if DECIMAL_COMMA.search(text.strip()) else text


def cell_text(value: Any) -> str:
    """A cell as stripped text; a short row's missing cells come back as NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()
