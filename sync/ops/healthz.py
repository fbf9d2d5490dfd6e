"""`/healthz` and `/metrics` for the daemon, on a small threaded HTTP server.

Health is read from the `runs` table, not from this process's memory: with two replicas only
one captures a connector at a time (the other finds the lock taken), and both must still
report the connector healthy when either of them ran it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ga4sync.state.store import StateStore

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True)
class ScheduledConnector:
    """A connector the daemon runs, and how often it is expected to succeed."""

    name: str
    interval: timedelta


@dataclass(frozen=True)
class ConnectorHealth:
    name: str
    interval: timedelta
    last_success: datetime | None
    healthy: bool

    def as_json(self) -> dict[str, object]:
        return {
            "connector": self.name,
            "interval_s": self.interval.total_seconds(),
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "healthy": self.healthy,
        }


@dataclass(frozen=True)
class HealthReport:
    connectors: list[ConnectorHealth]

    @property
    def ok(self) -> bool:
        return all(c.healthy for c in self.connectors)

    @property
    def stale(self) -> list[str]:
        return [c.name for c in self.connectors if not c.healthy]

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "stale",
            "stale": self.stale,
            "connectors": [c.as_json() for c in self.connectors],
        }


def check_health(
    store: StateStore,
    connectors: Sequence[ScheduledConnector],
    *,
    now: datetime,
    started_at: datetime,
) -> HealthReport:
    """Healthy = succeeded within 3 of its intervals; a fresh daemon gets the same grace."""
    last = store.last_capture_successes([c.name for c in connectors])
    out = []
    for c in connectors:
        seen = last.get(c.name)
        reference = max(seen, started_at) if seen else started_at
        healthy = now - reference <= c.interval * STALE_AFTER_INTERVALS
        out.append(ConnectorHealth(c.name, c.interval, seen, healthy))
    return HealthReport(out)


class StatusServer:
    """Serves `/healthz` (200 or 503 with JSON) and `/metrics` (Prometheus text format)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        health: Callable[[], HealthReport],
        metrics: Callable[[], bytes],
    ) -> None:
        handler = _handler_class(health, metrics)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="ga4sync-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _handler_class(
    health: Callable[[], HealthReport], metrics: Callable[[], bytes]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                try:
                    report = health()
                except Exception as exc:  # noqa: BLE001 - a broken DB is an unhealthy daemon
                    log.error("health check failed: %s", type(exc).__name__)
                    body = {"status": "error", "error": f"state store: {type(exc).__name__}"}
                    self._send(503, "application/json", json.dumps(body).encode())
                    return
                status = 200 if report.ok else 503
                self._send(status, "application/json", json.dumps(report.as_json()).encode())
            elif path == "/metrics":
                self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics())
            else:
                self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("http: " + format, *args)

    return Handler
