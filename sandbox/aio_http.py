"""An asyncio HTTP/1.1 server for sandboxes that must keep up with hundreds of requests/s.

The threaded server (sandbox/http.py) parks one thread per connection in `time.sleep` to fake
latency; with 32 keep-alive connections its threads fight over one GIL and add milliseconds of
their own to every answer, which a benchmark would then blame on the client. Here latency is an
`asyncio.sleep` on one thread: exact, and cheap. Same wire behaviour: keep-alive,
Content-Length bodies, `reset` (RST after reading the request) and `stall:<s>` actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from ga4sync.sandbox.http import Request, Response

DelayedHandler = Callable[[Request], tuple[float, Response]]
"""request -> (seconds to wait before answering, the answer)."""


class AsyncSandboxServer:
    """Runs a handler on 127.0.0.1 in an event loop on a background thread."""

    def __init__(self, handler: DelayedHandler, *, port: int = 0) -> None:
        self.handler = handler
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        """TCP connections accepted so far: shows whether clients reuse keep-alive ones."""
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = getattr(self._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AsyncSandboxServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self._port, backlog=1024), self._loop
        ).result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            # Connections parked in a stall or latency sleep: end them so the loop closes clean.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, UnicodeDecodeError):
            pass
        except asyncio.CancelledError:
            pass  # stop() ends parked connections; finishing quietly keeps asyncio from logging
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is finished."""
        line = await reader.readline()
        if not line.strip():
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        split = urlsplit(target)
        req = Request(
            method=method,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=headers,
            body=body,
        )
        delay, resp = self.handler(req)
        if delay > 0:
            await asyncio.sleep(delay)
        if resp.action == "reset":
            _reset(writer)
            return False
        if resp.action and resp.action.startswith("stall:"):
            await asyncio.sleep(float(resp.action.split(":", 1)[1]))
            _reset(writer)
            return False
        lines = [f"HTTP/1.1 {resp.status} {_phrase(resp.status)}"]
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        lines.append(f"Content-Length: {len(resp.body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with RST so the client sees it closed after sending."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
