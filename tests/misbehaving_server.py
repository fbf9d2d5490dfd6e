"""A GA4 stand-in on 127.0.0.1 that fails at one chosen moment of an HTTP exchange.

The sandbox GA4 answers at the HTTP level; these failures happen below it (TLS records, TCP
resets, a close halfway through the request), which is where "was the request fully written?"
is decided. Complete requests received are kept, so a test can tell what GA4 would have.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

Behaviour = Literal[
    "tls_handshake_garbage",
    "close_while_reading",
    "garbage_after_request",
    "non_tls_record_after_request",
    "reset_after_request",
    "stall_after_request",
]
TLS_BEHAVIOURS = {"non_tls_record_after_request"}
"""These speak TLS properly up to the failure (`tls_handshake_garbage` must not: it fails it)."""


@dataclass
class MisbehavingServer:
    behaviour: Behaviour
    tls: ssl.SSLContext | None = None
    complete_requests: list[dict[str, object]] = field(default_factory=list)
    partial_requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = (
            "https" if self.tls is not None or self.behaviour == "tls_handshake_garbage" else "http"
        )
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        conn = raw
        try:
            if self.behaviour == "tls_handshake_garbage":
                raw.recv(4096)  # the ClientHello
                raw.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS at all\r\n")
                return
            if self.tls is not None:
                conn = self.tls.wrap_socket(raw, server_side=True)  # takes over the socket
            if self.behaviour == "close_while_reading":
                got = 0
                while got < 64 * 1024:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                self.partial_requests += 1
                _reset(conn)
                return
            body = _read_request(conn)
            self.complete_requests.append(json.loads(body))
            if self.behaviour == "garbage_after_request":
                conn.sendall(b"\x00\x01\x02 this is not HTTP\r\n\r\n")
            elif self.behaviour == "non_tls_record_after_request":
                # Bytes straight on the TCP stream, under the TLS layer: the client's TLS reads
                # a record of no known type (the issue's `SSLError: BAD_RECORD_TYPE`).
                with socket.socket(fileno=os.dup(conn.fileno())) as under:
                    under.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif self.behaviour == "reset_after_request":
                _reset(conn)
                return
            elif self.behaviour == "stall_after_request":
                self._stop.wait(30)
        except OSError:
            pass
        finally:
            conn.close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("client closed before the headers ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("client closed before the body ended")
        body += chunk
    return body
