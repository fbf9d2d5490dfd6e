"""How many requests to GA4 may be in flight: a limit that finds its own level (pure rules).

GA4 documents no rate limit short of 100M requests an hour, but the wire between us and it
(a proxy, server-side GTM, a Google front end having a bad minute) has a capacity, and past it
more concurrency only buys 429s, 5xx and longer answers. So the limit starts at the configured
`workers` and moves within [min_workers, max_workers] the way TCP's congestion window does:

- multiplicative decrease on 429, 5xx and transport failures: the limit halves, at most once per
  window. A burst of refusals answers requests that were all sent at the old level, so only a
  refusal of a request admitted after the last decrease can cut again (TCP's recovery point).
- latency (Vegas / Netflix `concurrency-limits` gradient): each window's median latency of good
  answers (robust to a few slow outliers) is smoothed across windows and compared with the
  lowest window median seen (the baseline: the answer time of an idle path). Clearly above it
  (`LATENCY_TOLERANCE` times, and by at least `MIN_RISE_S`) means requests queue somewhere:
  the limit shrinks gently. Close to it, and the limit was actually used, it grows.
- growth (TCP CUBIC's shape): until the first cut, by one per window. After a cut, the level it
  cut from is remembered (`w_max`: the level that failed) and the limit climbs back on a cubic
  curve of the clean windows since the cut: fast at first, then flattening out just below
  w_max (the last level not known to fail), where it stays for a while; it tries w_max again
  only after a sustained clean run there (`CUBIC_C`), and grows faster (convex) only once it
  has run past w_max without trouble. Climbing by one per window instead probes past a path's
  capacity again right after each halving, and each probe costs a refusal and its Retry-After
  pause (against a stand-in with a capacity of 16 and Retry-After 1 s: a third of the time).
- a window is one round trip at the current level: `limit` answers to requests admitted since the
  window began. Counting answers instead of seconds keeps the rules free of any clock: the
  same observations always give the same limits.

GA4's Retry-After is honoured apart from the limit: it says *when* to send again, the limit
says *how many* at once. `paused_until` is the caller's time (seconds on whatever monotonic
scale it passes in as `now`) before which nothing new may start.
"""

from __future__ import annotations

import math
import statistics
import threading
from dataclasses import dataclass, field
from typing import Literal

from ga4sync.pipeline.ga4_client import SendOutcome

Signal = Literal["ok", "throttled", "server_error", "transport", "ignored"]

DECREASE_RATIO = 0.5
"""On 429/5xx/transport failure: halve, as TCP does on loss."""
LATENCY_DECREASE_RATIO = 0.8
"""On clearly rising latency: a gentler cut; latency is a softer signal than a refusal."""
LATENCY_TOLERANCE = 2.0
"""Smoothed latency above this many times the baseline: requests are queueing; shrink."""
GROW_TOLERANCE = 1.5
"""Grow only while smoothed latency stays below this many times the baseline."""
MIN_RISE_S = 0.010
"""...and only count a rise of at least this much: on a 2 ms path, 4 ms is noise, not a queue."""
SMOOTHING = 0.5
"""Weight of the newest window's median in the smoothed latency."""
BASELINE_DRIFT = 0.02
"""Per window, the baseline creeps this fraction toward the current median when above it, so a
path that really got slower (a new route) is not held to an old best for ever."""
CUBIC_C = 0.0005
"""The cubic climb's scale, in limit units per clean window cubed: after 16 failed and the
limit was cut to 8, it is back at 14 after 12 clean windows and at 15 after 25, tries 16 again
after 37 and 17 after 40 (tests/test_concurrency.py has the table). Smaller: longer plateaus,
slower recovery after a real drop; larger: sooner back to probing a level that failed."""
MAX_STEP_RATIO = 0.5
"""Past w_max the convex climb speeds up, but by at most half the limit per window."""
MIN_WINDOW = 4
"""A window has at least this many answers, so one odd answer at a low limit is not a median."""
MAX_PAUSE_S = 10.0
"""GA4 asked to slow down for at most this long: new sends pause (and the limit shrinks).
Longer, and a pause is no longer this module's business: delivery stops claiming and gives
back what has not started, due once the Retry-After has passed (delivery.py `_hold_back`)."""
NO_HINT_PAUSE_S = 1.0
"""A 429 without Retry-After: GA4 gave no hint; pause new sends this long anyway."""


def classify(outcome: SendOutcome) -> Signal:
    """What an answer says about load on the path to GA4."""
    if outcome.kind == "not_sent":
        return "ignored"  # never left: says nothing about GA4
    if outcome.http_status == 429:
        return "throttled"
    if outcome.http_status is not None and outcome.http_status >= 500:
        return "server_error"
    if outcome.http_status is None and outcome.kind in ("retry", "unknown"):
        return "transport"  # refused, reset, read timeout: no answer at all
    return "ok"  # 2xx, or a 4xx refusal of this request's content: the path answered


@dataclass
class LimitChange:
    """Why the limit last moved (for logs and the run summary)."""

    old: int
    new: int
    reason: str


@dataclass
class ConcurrencyLimit:
    """The adaptive limit. Its methods are not thread-safe: every delivery gate sharing this
    limit (a daemon delivers for several connectors at once, over one path to GA4) holds
    `lock` around each call."""

    initial: int
    minimum: int = 1
    maximum: int | None = None
    limit: int = field(init=False)
    in_flight: int = field(init=False, default=0)
    paused_until: float = field(init=False, default=float("-inf"))
    baseline_s: float | None = field(init=False, default=None)
    smoothed_s: float | None = field(init=False, default=None)
    throttled: int = field(init=False, default=0)
    """429 answers seen (all of them, also those that did not cut the limit)."""
    lowest: int = field(init=False)
    highest: int = field(init=False)
    last_change: LimitChange | None = field(init=False, default=None)
    lock: threading.Condition = field(
        init=False, default_factory=threading.Condition, repr=False, compare=False
    )
    _next_ticket: int = field(init=False, default=0)
    _recovery_ticket: int = field(init=False, default=0)
    _window_start: int = field(init=False, default=0)
    _window_latencies: list[float] = field(init=False, default_factory=list)
    _window_peak: int = field(init=False, default=0)
    _w_max: int | None = field(init=False, default=None)
    """The level the last cut came from (None: no cut yet, grow by one per window)."""
    _plateau: int = field(init=False, default=0)
    """Just below `_w_max`: the highest level not known to fail, where the climb flattens."""
    _k: float = field(init=False, default=0.0)
    """Clean windows the cubic climb takes from the cut level to `_plateau`."""
    _clean_windows: int = field(init=False, default=0)
    """Windows since the last cut in which the limit could grow (used, latency holding)."""

    def __post_init__(self) -> None:
        self.minimum = max(1, self.minimum)
        self.maximum = max(self.maximum if self.maximum is not None else self.initial, 1)
        if not self.minimum <= self.initial <= self.maximum:
            raise ValueError(
                f"concurrency limits must satisfy min ({self.minimum}) <= start "
                f"({self.initial}) <= max ({self.maximum})"
            )
        self.limit = self.lowest = self.highest = self.initial

    @property
    def fixed(self) -> bool:
        return self.minimum == self.maximum

    def may_start(self, now: float) -> bool:
        return self.in_flight < self.limit and now >= self.paused_until

    def admit(self) -> int:
        """A request starts; its ticket tells later which window it was sent in."""
        ticket = self._next_ticket
        self._next_ticket += 1
        self.in_flight += 1
        self._window_peak = max(self._window_peak, self.in_flight)
        return ticket

    def observe(
        self,
        ticket: int,
        signal: Signal,
        latency_s: float,
        now: float,
        retry_after: float | None = None,
    ) -> int:
        """The request with `ticket` finished: returns the new limit."""
        self.in_flight = max(0, self.in_flight - 1)
        pause = None
        if signal == "throttled":
            self.throttled += 1
            pause = retry_after if retry_after is not None else NO_HINT_PAUSE_S
        elif signal == "server_error":
            pause = retry_after  # a 503 with a hint
        if pause is not None and pause <= MAX_PAUSE_S:
            self.paused_until = max(self.paused_until, now + pause)
        if signal == "ignored":
            return self.limit
        if signal in ("throttled", "server_error", "transport"):
            if ticket >= self._recovery_ticket:
                self._cut(DECREASE_RATIO, f"GA4 answered {signal.replace('_', ' ')}")
            return self.limit
        if ticket < self._window_start:
            return self.limit  # sent at an earlier level: its latency describes that one
        self._window_latencies.append(latency_s)
        if len(self._window_latencies) >= max(self.limit, MIN_WINDOW):
            self._end_window()
        return self.limit

    def _end_window(self) -> None:
        median = statistics.median(self._window_latencies)
        used = self._window_peak * 2 >= self.limit
        if self.baseline_s is None or median < self.baseline_s:
            self.baseline_s = median
        else:
            self.baseline_s += (median - self.baseline_s) * BASELINE_DRIFT
        self.smoothed_s = (
            median
            if self.smoothed_s is None
            else self.smoothed_s + (median - self.smoothed_s) * SMOOTHING
        )
        rise = self.smoothed_s - self.baseline_s
        if self.smoothed_s > self.baseline_s * LATENCY_TOLERANCE and rise >= MIN_RISE_S:
            self._cut(LATENCY_DECREASE_RATIO, "latency rose clearly above its baseline")
            return
        holds = self.smoothed_s <= self.baseline_s * GROW_TOLERANCE or rise < MIN_RISE_S
        if holds and used and self.limit < self._max:
            self._clean_windows += 1
            new = self._climb()
            self._set(new, self._climb_reason(new))
        self._new_window()

    def _climb(self) -> int:
        """The level after one more clean window: CUBIC's W(t) = plateau + C (t - K)^3, where
        t counts clean windows since the last cut (not seconds, so the rules stay pure) and K
        is where the curve, starting at the level the cut left, reaches the plateau. Rounded
        down, it stays below w_max until C (t - K)^3 >= 1. It never falls on a clean window,
        and rises by at most `MAX_STEP_RATIO` of the limit per window."""
        if self._w_max is None:
            return self.limit + 1
        t = self._clean_windows - self._k
        target = math.floor(self._plateau + CUBIC_C * t * t * t)
        step = max(1, int(self.limit * MAX_STEP_RATIO))
        return max(self.limit, min(target, self.limit + step))

    def _climb_reason(self, new: int) -> str:
        if self._w_max is None:
            return "latency holds"
        if new < self._w_max:
            return f"latency holds; back towards {self._w_max}, where GA4 last pushed back"
        return f"latency holds at and past {self._w_max}, where GA4 last pushed back"

    def _cut(self, ratio: float, reason: str) -> None:
        failed = self.limit
        self._set(min(self.limit - 1, int(self.limit * ratio)), reason)
        # The climb back starts here, and aims just below the level that failed.
        self._w_max = failed
        self._plateau = max(self.limit, failed - 1)
        self._k = math.cbrt((self._plateau - self.limit) / CUBIC_C)
        self._clean_windows = 0
        # Everything admitted so far answers for the old level: none of it may cut again.
        self._recovery_ticket = self._next_ticket
        self._new_window()

    def _set(self, new: int, reason: str) -> None:
        new = max(self.minimum, min(self._max, new))
        if new != self.limit:
            self.last_change = LimitChange(self.limit, new, reason)
            self.limit = new
            self.lowest = min(self.lowest, new)
            self.highest = max(self.highest, new)

    def _new_window(self) -> None:
        self._window_start = self._next_ticket
        self._window_latencies = []
        self._window_peak = self.in_flight

    @property
    def _max(self) -> int:
        assert self.maximum is not None
        return self.maximum
