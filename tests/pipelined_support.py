"""Sandbox hooks that make "delivery starts while capture is still paging" deterministic.

Both hooks sit on the sandbox apps' own `before`/`after` lists, so ga4sync (a subprocess or
the CLI in this process) meets the real wire and only the answers' timing is steered:

- `PageGate` holds every Salesforce `queryMore` (a capture asking for its next page; the page
  before it is committed by then) until it is opened.
- `on_first_event` calls back when GA4 has recorded its first event.

Opening the gate on GA4's first event proves the order without a sleep: if delivery waited
for the whole capture, no event would ever come and the gate would time out.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from ga4sync.sandbox.http import Request, Response
from ga4sync.sandbox.runner import SandboxEnvironment

WAIT_S = 90.0
"""How long a held page waits: generous, a loaded machine only makes GA4's first event later."""
QUERY_MORE = re.compile(r"/services/data/v[\d.]+/(?:query|queryAll)/[A-Za-z0-9]+-\d+$")


class PageGate:
    """Holds the capture's next page (Salesforce `queryMore`) until `open()`."""

    def __init__(self, sandbox: SandboxEnvironment, *, timeout: float = WAIT_S) -> None:
        self.timeout = timeout
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.held = 0
        """queryMore requests that had to wait: the capture was paging."""
        self.waiting = 0
        """Requests waiting right now."""
        self.timed_out = False
        self.holding = threading.Event()
        """Set once a page is held: the capture committed the page before it and asked on."""
        sandbox.salesforce.app.before.append(self._hook)

    def open(self) -> None:
        self.opened.set()

    def _hook(self, req: Request) -> Response | None:
        if self.opened.is_set() or not QUERY_MORE.search(req.path):
            return None
        with self.lock:
            self.held += 1
            self.waiting += 1
        self.holding.set()
        try:
            if not self.opened.wait(self.timeout):
                self.timed_out = True
        finally:
            with self.lock:
                self.waiting -= 1
        return None


class FirstEvent:
    """Records what the capture was doing when GA4 recorded its first event."""

    def __init__(self, sandbox: SandboxEnvironment, gate: PageGate) -> None:
        self.gate = gate
        self.seen = threading.Event()
        self.pages_waiting: int | None = None
        """Capture requests held at the first event: > 0 means the capture was still paging."""
        sandbox.ga4.app.after.append(self._hook)

    def _hook(self, req: Request, resp: Response) -> None:
        if req.path != "/mp/collect" or resp.status >= 300 or self.seen.is_set():
            return
        with self.gate.lock:
            self.pages_waiting = self.gate.waiting
        self.seen.set()
        self.gate.open()


def hold_pages_until_first_event(sandbox: SandboxEnvironment) -> tuple[PageGate, FirstEvent]:
    gate = PageGate(sandbox)
    return gate, FirstEvent(sandbox, gate)


class BeforeFirstSend:
    """Runs `action` on GA4's server thread when the first request has arrived in full and
    before GA4 records or answers it: a signal sent from here lands with that request in
    flight and every other committed row not yet sent."""

    def __init__(self, sandbox: SandboxEnvironment, action: Callable[[], None]) -> None:
        self.action = action
        self.fired = threading.Event()
        self._lock = threading.Lock()
        sandbox.ga4.app.before.append(self._hook)

    def _hook(self, req: Request) -> Response | None:
        if req.path != "/mp/collect":
            return None
        with self._lock:
            if self.fired.is_set():
                return None
            self.fired.set()
            self.action()
        return None
