"""Human durations (`90s`, `5m`, `72h`, `7d`) as used in config files and CLI flags."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3650)
"""Nothing in ga4sync waits or looks back ten years; bigger values overflow date arithmetic."""


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(
            f"`{value}` is not a duration; write a number and a unit, e.g. 30s, 5m, 72h, 7d"
        )
    if abs(seconds) > MAX_DURATION.total_seconds():
        # timedelta itself overflows near 2.7 million years, and date arithmetic long before.
        raise ValueError(
            f"`{value}` is longer than {MAX_DURATION.days}d (ten years), the most any ga4sync "
            "duration may be"
        )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
