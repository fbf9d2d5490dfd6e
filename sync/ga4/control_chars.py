"""Control characters out of CRM text before it becomes a GA4 param (issue 13).

A CRM field can hold anything a form or an import put there: an ESC sequence, a BEL, a NUL,
C1 controls from text decoded with the wrong code page, or Unicode direction overrides that
make a value read backwards. GA4 stores them as given, and its reports, exports and the
terminal of whoever inspects them later then render them. Tabs and line breaks are kept as
what they mean, a gap between words: each run of them becomes one space, because a GA4 param
is a one-line label and a line break inside it splits rows of a CSV export.
"""

from __future__ import annotations

import re

_ESCAPE_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves (`ESC[31m`)
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: window title, links
)
"""Whole terminal escape sequences, so no `[31m` is left behind when the ESC is dropped."""
_LINE_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")
"""Tab, LF, CR, VT, FF, the ASCII separators, NEL and the Unicode line/paragraph separators."""
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]")
"""The remaining C0 controls (NUL, BEL, ESC...), DEL, C1 controls, and the bidi embeddings,
overrides and isolates that reorder how text is displayed."""


def strip_control_characters(text: str) -> str:
    """`"Closed\\r\\nWon\\x1b[31m!"` -> `"Closed Won!"`: escape sequences and other controls
    are dropped, line breaks become a space, everything else is kept as it was."""
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", _ESCAPE_SEQUENCES.sub("", text)))
