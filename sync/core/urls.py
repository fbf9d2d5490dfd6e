"""Base URLs in the config (GA4 endpoint, CRM hosts) are checked whole when the config loads.

A URL without a host passes a prefix check, and the client then fails building its request URL,
with the secret already in the query string, in a traceback. So each base URL must parse to a
scheme and a host here, where the error can name the config line instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_CONTROL = {chr(c) for c in range(0x21)} | {"\x7f"}


def check_base_url(value: str) -> str:
    """`value` if it is an http(s) URL with a host; ValueError saying what to fix otherwise.

    Messages never quote the URL: one with `user:password@` in it carries a credential, and
    the error already names the line where it is written.
    """
    if any(ch in _CONTROL for ch in value):
        raise ValueError("a URL has no spaces or control characters; remove them")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(
            "is not a URL ga4sync can use: its host or port cannot be read; write e.g. "
            "https://host.example.com or https://host.example.com:8443"
        ) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must start with https:// (or http:// for a local test server)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not hold a user name or password (`user:password@host`): it would be "
            "printed wherever the URL is; give credentials as secrets (`env:` or `file:`)"
        )
    if not parts.hostname:
        raise ValueError("has no host name; write e.g. https://host.example.com")
    if port == 0:
        raise ValueError("port 0 is not a port; leave the port out or give the real one")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("a base URL has no `?query` or `#fragment`; remove them")
    return value
