"""Why a CRM could not be reached, in words a sales-ops person can act on.

`requests` and urllib3 wrap the cause two or three times (ConnectionError(MaxRetryError(
NewConnectionError(...)))), and the wrapper's name alone (`ConnectionError`, `MaxRetryError`)
says neither what failed nor what to check. This digs out the cause and names it; its text is
redacted and cut short because urllib3 repeats the request URL (with its query) in it.
"""

from __future__ import annotations

import socket
import ssl

import requests
import urllib3.exceptions as u3
from ga4sync.core.secrets import redact


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause: through requests' wrapper, MaxRetryError.reason and __cause__."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner: object = None
        if isinstance(exc, u3.MaxRetryError):
            inner = exc.reason
        elif isinstance(exc, requests.RequestException | u3.ProtocolError) and exc.args:
            inner = exc.args[0] if isinstance(exc.args[0], BaseException) else None
        if inner is None:
            inner = exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def unreachable_reason(exc: BaseException) -> str:
    """`connection refused (...)`, `host name not found (...)`, ...: the words, then the cause."""
    cause = _cause(exc)
    detail = redact(f"{type(cause).__name__}: {cause}")[:240]
    text = str(cause).lower()
    if isinstance(cause, u3.NameResolutionError | socket.gaierror):
        words = "the host name was not found (DNS); check the URL"
    elif isinstance(cause, ssl.SSLError | u3.SSLError | requests.exceptions.SSLError):
        words = "TLS failed (is the certificate trusted? a proxy with its own CA needs ca_file)"
    elif isinstance(
        cause, u3.ConnectTimeoutError | requests.exceptions.ConnectTimeout | TimeoutError
    ):
        words = "timed out connecting; check the URL and any firewall or proxy"
    elif isinstance(cause, ConnectionRefusedError) or "refused" in text:
        words = "connection refused (nothing answers at that address and port)"
    elif isinstance(cause, ConnectionResetError | u3.ProtocolError) or "reset" in text:
        words = "the connection was dropped"
    else:
        words = "the connection failed"
    return f"{words}: {detail}"
