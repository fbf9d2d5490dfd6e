"""Know whether a request was fully written before the transport failed.

GA4 has no idempotency key, so a failed POST may be retried only if GA4 cannot have it. The
exception type does not tell: a TLS error can come from the handshake (nothing sent) or from
reading the answer (GA4 has the event), a reset can come before or after the body. What does
tell is how far the write got. The connections below record "the whole request was handed to
the socket" the moment `request()` returns; a failure before that point is provably harmless
(GA4 never acts on half a request), a failure after it may have reached GA4.

The record is per thread: a delivery worker sends one request at a time on its own thread, and
urllib3 writes and reads on the caller's thread.
"""

from __future__ import annotations

import threading
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager


class _WriteProgress(threading.local):
    written: bool = False


_progress = _WriteProgress()


def start_request() -> None:
    """Call right before sending: nothing of this request has been written yet."""
    _progress.written = False


def request_written() -> bool:
    """Whether the request started by `start_request` on this thread was fully written."""
    return _progress.written


class _MarksWhenWritten:
    """Mixed into urllib3's connections: `request()` returning means every byte was written."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        # Only reached when every byte went to the socket (urllib3 swallows a BrokenPipe
        # raised inside, so the flag must not be set by anything but a normal return).
        _progress.written = True


class WriteTrackingHTTPConnection(_MarksWhenWritten, HTTPConnection):
    pass


class WriteTrackingHTTPSConnection(_MarksWhenWritten, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = WriteTrackingHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = WriteTrackingHTTPSConnection


class WriteTrackingAdapter(HTTPAdapter):
    """A requests adapter whose connections record when a request was fully written."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: object
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        manager: PoolManager = self.poolmanager
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
