"""GA4 Measurement Protocol stand-in: `/mp/collect` answers 204 like production, the debug
endpoint answers with Google's recorded answers (ga4_debug.py), and every accepted hit is kept
for `/sandbox/hits`.

Faults are injectable per test (latency, status codes, connection resets before or after the
hit is recorded, read stalls) so delivery can be proven exactly-once against a hostile GA4.
A load-dependent mode (`capacity`, `latency_per_inflight_ms`) slows down with the requests in
flight and answers 429 past its capacity, for the adaptive concurrency (pipeline/concurrency.py).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from ga4sync.core.clock import Clock, SystemClock
from ga4sync.sandbox.aio_http import AsyncSandboxServer
from ga4sync.sandbox.ga4_debug import RecordedDebugAnswers
from ga4sync.sandbox.http import App, Request, Response, SandboxServer


@dataclass
class Faults:
    """Probabilities per request; the remainder is a normal 204."""

    latency_ms: float = 0.0
    status_500: float = 0.0
    status_503: float = 0.0
    status_429: float = 0.0
    status_400: float = 0.0
    """A 4xx: GA4 refused the HTTP request itself (nothing recorded)."""
    reset_before: float = 0.0
    """Connection dropped before GA4 recorded anything (client: unknown)."""
    reset_after: float = 0.0
    """Hit recorded, then the connection dropped (client: unknown)."""
    stall: float = 0.0
    """Hit recorded, then no answer for `stall_seconds` (client: read timeout, unknown)."""
    stall_seconds: float = 2.0
    retry_after: str | None = "1"
    """Retry-After on 429 and 503 (capacity 429s too). GA4's Measurement Protocol documents no
    429 at all (ga4-mp.md); Google's other Analytics APIs document 403/429 on quota without a
    Retry-After. Google front ends that shed load do send one, so the default has it; set
    None for a 429 without it."""
    capacity: int | None = None
    """Requests this stand-in works on at once; one more arriving is answered 429 at once
    (nothing recorded). None: no limit."""
    latency_per_inflight_ms: float = 0.0
    """Added to `latency_ms` for each request in flight (this one included) when it arrives:
    a server that slows down under load."""
    seed: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Hit:
    received_at: datetime
    measurement_id: str | None
    body: dict[str, Any]


@dataclass
class Ga4Sandbox:
    expected_secret: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    hits: list[Hit] = field(default_factory=list)
    dropped_bad_secret: int = 0
    requests: int = 0
    debug_requests: int = 0
    """Calls to /debug/mp/collect (never recorded as hits, like Google's)."""
    faults: Faults = field(default_factory=Faults)
    debug_answers: RecordedDebugAnswers = field(default_factory=RecordedDebugAnswers)
    debug_recordings_used: list[str] = field(default_factory=list)
    """Which recording answered each debug request, in order (tests assert on it)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    over_capacity: int = 0
    """Requests answered 429 because `Faults.capacity` were already in flight."""
    load_seen: list[int] = field(default_factory=list)
    """In capacity mode: requests in flight (this one included) as each accepted one arrived."""
    _rng: random.Random = field(default_factory=random.Random)
    _answer_due: list[float] = field(default_factory=list)
    """Monotonic times the accepted requests in flight will be answered (capacity mode)."""

    def __post_init__(self) -> None:
        self.app = self._build_app()

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.requests = 0
            self.debug_requests = 0
            self.debug_recordings_used.clear()
            self.dropped_bad_secret = 0
            self.over_capacity = 0
            self.load_seen.clear()
            self._answer_due.clear()

    def events(self) -> list[dict[str, Any]]:
        """Flattened events with their request's client_id, in arrival order."""
        with self.lock:
            out = []
            for hit in self.hits:
                for ev in hit.body.get("events", []):
                    out.append(
                        {
                            "client_id": hit.body.get("client_id"),
                            "user_id": hit.body.get("user_id"),
                            **ev,
                        }
                    )
            return out

    def counted_events(self) -> list[dict[str, Any]]:
        """The events GA4 would count: a repeated purchase with the same non-empty
        transaction_id is dropped, as GA4 deduplicates those (and nothing else)."""
        seen: set[str] = set()
        out = []
        for ev in self.events():
            tid = (ev.get("params") or {}).get("transaction_id")
            if ev.get("name") == "purchase" and tid:
                if str(tid) in seen:
                    continue
                seen.add(str(tid))
            out.append(ev)
        return out

    def _choose(self) -> str:
        f = self.faults
        roll = self._rng.random()
        for name, p in (
            ("500", f.status_500),
            ("503", f.status_503),
            ("429", f.status_429),
            ("400", f.status_400),
            ("reset_before", f.reset_before),
            ("reset_after", f.reset_after),
            ("stall", f.stall),
        ):
            if roll < p:
                return name
            roll -= p
        return "ok"

    def _load_delay(self) -> float | None:
        """Seconds this request takes given the load; None past capacity (held lock)."""
        f = self.faults
        if f.capacity is None and not f.latency_per_inflight_ms:
            return f.latency_ms / 1000
        now = time.monotonic()
        self._answer_due = [t for t in self._answer_due if t > now]
        load = len(self._answer_due) + 1
        if f.capacity is not None and load > f.capacity:
            return None
        delay = (f.latency_ms + f.latency_per_inflight_ms * load) / 1000
        self._answer_due.append(now + delay)
        self.load_seen.append(load)
        return delay

    def decide_collect(self, req: Request) -> tuple[float, Response]:
        """What `/mp/collect` does with one request: (seconds to wait first, the answer).

        Shared by the threaded and the asyncio server, so both behave the same; the hit is
        recorded here for every fault that happens after GA4 received it.
        """
        with self.lock:
            self.requests += 1
            retry_after = self.faults.retry_after
            delay = self._load_delay()
            if delay is None:
                self.over_capacity += 1
                headers = {"Retry-After": retry_after} if retry_after else {}
                return 0.0, Response(429, b"", headers)
            fault = self._choose()
            stall_s = self.faults.stall_seconds
        if fault in ("500", "503", "429"):
            headers = {"Retry-After": retry_after} if retry_after and fault != "500" else {}
            return delay, Response(int(fault), b"", headers)
        if fault == "400":
            return delay, Response(400, b"bad request")
        if fault == "reset_before":
            return delay, Response(action="reset")
        try:
            body = json.loads(req.body.decode("utf-8"))
        except ValueError:
            return delay, Response(400, b"")
        if self.expected_secret is not None and req.arg("api_secret") != self.expected_secret:
            with self.lock:
                self.dropped_bad_secret += 1
            return delay, Response(204)  # production answers 2xx and silently drops it
        with self.lock:
            self.hits.append(Hit(self.clock.now(), req.arg("measurement_id"), body))
        if fault == "reset_after":
            return delay, Response(action="reset")
        if fault == "stall":
            return delay, Response(action=f"stall:{stall_s}")
        return delay, Response(204)

    def _build_app(self) -> App:
        app = App()

        @app.route("POST", r"/mp/collect")
        def collect(req: Request) -> Response:
            delay, resp = self.decide_collect(req)
            if delay:
                time.sleep(delay)
            return resp

        @app.route("POST", r"/debug/mp/collect")
        def debug(req: Request) -> Response:
            with self.lock:
                self.debug_requests += 1
            answer = self.debug_answers.answer(req.body)
            if answer.recording:
                with self.lock:
                    self.debug_recordings_used.append(answer.recording)
            json_type = {"Content-Type": "application/json; charset=UTF-8"}
            return Response(answer.status, answer.body, json_type if answer.recording else {})

        @app.route("GET", r"/sandbox/hits")
        def hits(req: Request) -> Response:
            with self.lock:
                data = [
                    {
                        "received_at": h.received_at.isoformat(),
                        "measurement_id": h.measurement_id,
                        "body": h.body,
                    }
                    for h in self.hits
                ]
            return Response.json(
                {
                    "hits": data,
                    "requests": self.requests,
                    "dropped_bad_secret": self.dropped_bad_secret,
                    "over_capacity": self.over_capacity,
                    "load_seen": list(self.load_seen),
                }
            )

        @app.route("POST", r"/sandbox/reset")
        def reset(req: Request) -> Response:
            self.reset()
            return Response(204)

        @app.route("POST", r"/sandbox/faults")
        def faults(req: Request) -> Response:
            self.set_faults(Faults.from_json(req.json() or {}))
            return Response(204)

        return app


class RunningServer(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def port(self) -> int: ...

    def stop(self) -> None: ...


ServerKind = Literal["asyncio", "threads"]


def serve_ga4(ga4: Ga4Sandbox, *, port: int = 0, kind: ServerKind = "asyncio") -> RunningServer:
    """Serve the GA4 sandbox on 127.0.0.1 over plain HTTP (as a local proxy would).

    Both servers behave the same on the wire. Measured in a separate process at 50 ms and
    32 keep-alive connections (~600 requests/s), both keep up; asyncio spends about 230 us of
    CPU per request against 310 us for threads, but its timers fire up to 1 ms late (epoll
    waits in whole milliseconds), while a thread's `time.sleep` is exact. Tests default to
    asyncio (a stall costs no thread); the benchmark uses threads for the exact latency.
    """
    if kind == "threads":
        return SandboxServer(ga4.app, port=port).start()

    def handle(req: Request) -> tuple[float, Response]:
        if req.method == "POST" and req.path == "/mp/collect":
            return ga4.decide_collect(req)
        return 0.0, ga4.app.handle(req)

    return AsyncSandboxServer(handle, port=port).start()
