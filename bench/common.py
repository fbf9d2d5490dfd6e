"""Shared bench helpers: peak memory, the one-line RESULT summary every bench ends with, and
the "tutorial" GA4 sender the delivery benches compare ga4sync with."""

from __future__ import annotations

import resource
import sys
import time

import requests


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


def send_one_by_one(
    base_url: str, events: int, *, measurement_id: str, api_secret: str, first_client: int
) -> float:
    """Events per second the tutorial way: `requests.post` per event, a new connection each
    time, one at a time. `first_client` keeps its client ids apart from the other senders a
    bench runs against the same GA4 stand-in."""
    now_us = int(time.time() * 1e6)
    t0 = time.perf_counter()
    for i in range(events):
        body = {
            "client_id": f"{first_client + i}.{now_us // 1_000_000}",
            "events": [
                {
                    "name": "generate_lead",
                    "params": {"value": 1250.0, "currency": "USD"},
                    "timestamp_micros": now_us - 300_000_000,
                }
            ],
        }
        resp = requests.post(
            f"{base_url}/mp/collect",
            params={"measurement_id": measurement_id, "api_secret": api_secret},
            json=body,
            timeout=10,
        )
        resp.raise_for_status()
    return events / (time.perf_counter() - t0)
