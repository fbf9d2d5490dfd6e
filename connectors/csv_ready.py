"""When a CSV file is complete enough to read: the `ready:` setting's rules.

An export in progress (a POS writing its day, a copy over a network share) has a last row
cut short, and a cut row can still look valid: a client id `111.2` that was going to be
`111.222`. So a file is read only once it is complete, judged in one of three ways:

- `settled` (the default): the file's size and modification time are the same as at the
  previous run. The first run that sees a new or changed file only notes how it looks (in the
  state store, so a cron `run` remembers it too); the next run reads it if nothing moved. The
  file's own stamps are compared with each other, never with our clock, so a network share
  whose clock runs fast or slow changes nothing.
- `marker`: the exporter writes `NAME.done` next to `NAME` when it has finished.
- `renamed`: the exporter writes under another name (or folder) and renames finished files
  into place, so every file the `path` glob matches is already complete.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

ReadyRule = Literal["settled", "marker", "renamed"]

MARKER_SUFFIX = ".done"
"""`pos-2026-03-01.csv.done` says `pos-2026-03-01.csv` is complete."""


def seen_key(path: Path) -> str:
    """The state store key under which a file's last look is kept (ids are at most 128 long)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:40]
    return f"seen:{digest}"


def marker_of(path: Path) -> Path:
    """The done-marker that says `path` is complete."""
    return path.with_name(path.name + MARKER_SUFFIX)
