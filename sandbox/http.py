"""A tiny threaded HTTP/1.1 server with routing, keep-alive, TLS and fault hooks.

The sandbox servers must look like the real APIs on the wire (status codes, headers, bodies,
keep-alive, TLS), so they sit on the stdlib server directly instead of a web framework that
would add its own behaviour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str | None = None
    """`reset` (drop the connection after reading the request) or `stall:<seconds>`."""

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json;charset=UTF-8"}
        h.update(headers or {})
        return cls(status, json.dumps(data, default=str).encode(), h)


Handler = Callable[[Request], Response]


class App:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.before: list[Callable[[Request], Response | None]] = []
        self.after: list[Callable[[Request, Response], None]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.routes.append((method, re.compile("^" + pattern + "$"), fn))
            return fn

        return deco

    def handle(self, req: Request) -> Response:
        for hook in self.before:
            early = hook(req)
            if early is not None:
                return early
        allowed = False
        for method, pattern, fn in self.routes:
            m = pattern.match(req.path)
            if not m:
                continue
            allowed = True
            if method != req.method:
                continue
            req.params = m.groupdict()
            try:
                resp = fn(req)
            except Exception as exc:  # noqa: BLE001 - a sandbox bug must answer, not hang
                log.exception("sandbox handler failed")
                resp = Response.json({"error": f"sandbox error: {exc}"}, 500)
            for hook_after in self.after:
                hook_after(req, resp)
            return resp
        if allowed:
            return Response.json({"error": "method not allowed"}, 405)
        return Response.json({"error": f"no route for {req.method} {req.path}"}, 404)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in two writes; with Nagle on, the body waits for the client's
    delayed ACK (40 ms on Linux) on every keep-alive response that has a body."""
    app: App

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        resp = self.app.handle(req)
        if resp.action == "reset":
            self._reset()
            return
        if resp.action and resp.action.startswith("stall:"):
            time.sleep(float(resp.action.split(":", 1)[1]))
            self._reset()
            return
        self.log_request(resp.status)
        self.send_response_only(resp.status)
        self.send_header("Server", self.version_string())
        if "Date" not in resp.headers:  # a sandbox with an injected clock sends its own
            self.send_header("Date", self.date_time_string())
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if resp.body and self.command != "HEAD":
            self.wfile.write(resp.body)

    def _reset(self) -> None:
        """Drop the connection with RST so the client sees it closed after sending."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the crash tests do it on purpose) resets its connection;
        # that is the client's story, not a sandbox fault worth a traceback on the console.
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """Runs an App on 127.0.0.1 in a background thread, optionally over TLS."""

    def __init__(self, app: App, *, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        handler = type("Handler", (_Handler,), {"app": app})
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.tls = tls
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, daemon=True, kwargs={"poll_interval": 0.1}
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> SandboxServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Tls:
    ca_file: Path
    context: ssl.SSLContext


def make_tls(directory: Path) -> Tls:
    """A throwaway CA and a cert for 127.0.0.1/localhost; the CA file is what clients trust."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "sandbox-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return Tls(ca_file, ctx)
