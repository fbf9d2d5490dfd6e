"""Cells of a CSV row: text as written, and numbers in the notation the mapping reads.

Pure functions, so the rules for what a cell means can be tested without files.
"""

from __future__ import annotations

import re

DECIMAL_COMMA = re.compile(r",\d{1,2}$")
"""`19,90`, `1.234,5`: a comma followed by one or two final digits is never a thousands
separator."""


SPACE_GROUPS = re.compile(r"^[+-]?\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?:[.,]\d+)?$")
"""`1 234,50`, `1\u00a0234.5`: spaces (plain, no-break, narrow no-break, as Excel and French
or Swiss exports write them) between groups of three digits are thousands separators."""
COMMA_DECIMAL = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:\.\d{3})+)(?:,\d+)?$")
"""With `decimal: ","`: `19,90`, `1234,5`, `1.234,56`, `1.234`: a dot only groups thousands."""


def read_number(text: str, decimal: str) -> str | None:
    """A number cell in the mapping's notation (`1234.56`); None when it is ambiguous.

    With `decimal: ","`, `1.234,56` -> `1234.56`, and a dot that does not group thousands
    (`19.90`, `1,234.56`) is refused (None) rather than read as 1990 or 1.23456. With the
    default `.`, `19,90` is refused: the mapping's number conversion would drop the comma
    and send 1990.
    """
    text = text.strip()
    if SPACE_GROUPS.match(text):
        text = re.sub(r"[ \u00a0\u202f]", "", text)
    if decimal == ",":
        if not COMMA_DECIMAL.match(text):
            return None
        return text.replace(".", "").replace(",", ".")
    return None if DECIMAL_COMMA.search(text) else text
