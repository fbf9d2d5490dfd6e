"""When to try again: backoff, GA4's "slow down", and which unknown outcomes may be resent.

Pure functions, kept apart from the delivery loop so the rules that decide "never twice" can be
read (and tested) on their own. The settings they read live here too, so this module depends on
nothing in the delivery loop (delivery.py imports this, never the other way round).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from ga4sync.ga4.rules import Mode
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.store import ClaimedRow

OldEvents = Literal["skip", "clamp"]


@dataclass
class DeliverySettings:
    workers: int = 32
    """Concurrent requests to start with, each on its own pooled keep-alive connection."""
    min_workers: int = 1
    max_workers: int | None = None
    """The limit moves within [min_workers, max_workers] (concurrency.py); None: `workers`, so
    a caller that names only `workers` gets at most that many (the config file's default is
    twice `workers`)."""
    claim_size: int = 500
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    old_events: OldEvents = "skip"
    mode: Mode = Mode.ENFORCE
    validate_remote: bool = False
    """Check each new (mapping version, rule) against /debug/mp/collect before real sends."""


def backoff(
    attempt: int, settings: DeliverySettings, retry_after: float | None, rng: random.Random
) -> timedelta:
    """Exponential backoff with jitter, never sooner than GA4's Retry-After."""
    ceiling = min(
        settings.backoff_cap.total_seconds(),
        settings.backoff_base.total_seconds() * (2 ** max(attempt - 1, 0)),
    )
    wait_s = ceiling * (0.5 + rng.random() / 2)
    if retry_after is not None:
        wait_s = max(wait_s, retry_after)
    return timedelta(seconds=wait_s)


def resend_allowed(row: ClaimedRow) -> bool:
    """Only a purchase with a non-empty transaction_id is deduplicated by GA4 (ga4-mp.md)."""
    if not row.resend_if_unknown or row.event_name != "purchase":
        return False
    params = (row.payload.get("event") or {}).get("params") or {}
    tid = params.get("transaction_id")
    return tid is not None and str(tid).strip() != ""


def slow_down_seconds(outcomes: Iterable[SendOutcome]) -> float | None:
    """Seconds GA4 asked us to wait (429 always counts; 503 only with Retry-After)."""
    waits = [
        o.retry_after or 0.0
        for o in outcomes
        if o.http_status == 429 or (o.http_status == 503 and o.retry_after is not None)
    ]
    return max(waits) if waits else None
