"""Showing CRM-derived text on a terminal: visible, never markup, never a terminal command.

Stage names, record ids, reasons and keys come from a CRM anyone with edit rights can type
into. Printed raw, `[/]` crashes rich (MarkupError), `[link=...]` renders a link, and ESC, BEL
or a bidi override reach the terminal: an escape sequence can set the window title, hide text
or reorder what a person reads before acting on a row. Every text output of the commands that
show CRM values goes through `printable` (plain text) or `cell` (a rich cell, never parsed as
markup). JSON output is left exact: `json.dumps` already escapes control characters.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich loads with the first cell, not for plain text or JSON
    from rich.text import Text

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _harmful(ch: str) -> bool:
    """C0/C1 controls (ESC, BEL, NUL, CSI...), format characters (bidi overrides and
    isolates, zero-width joiners, BOM) and the Unicode line/paragraph separators."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def printable(value: object) -> str:
    """`value` as one line of harmless text: each control or format character is shown as
    its escape (`\\x1b`, `\\u202e`), so a person sees that it is there and what it is."""
    text = "" if value is None else str(value)
    if not any(_harmful(ch) for ch in text):
        return text
    return "".join(_visible(ch) if _harmful(ch) else ch for ch in text)


def cell(value: object, style: str = "") -> Text:
    """A rich table cell for a CRM value: printable, and never read as markup."""
    from rich.text import Text

    return Text(printable(value), style=style)
