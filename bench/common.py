"""Shared bench helpers: peak memory and the one-line RESULT summary every bench ends with."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024, 1)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def result_line(**figures: float | int | str) -> str:
    """`RESULT a=1 b=2.5`: the last line of every bench, parsed by people and scripts alike."""
    parts = []
    for name, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
        parts.append(f"{name}={value}")
    return "RESULT " + " ".join(parts)
