"""Send Measurement Protocol requests with `requests`, and classify what happened.

GA4 has no idempotency key, so the classification decides correctness: only failures where
the request provably did not reach GA4 may be retried (5xx, 429, and any transport failure
before the request was fully written, whatever its type); any transport failure after that (a
read timeout, a reset, a TLS error while reading the answer) is `unknown` (write_tracking.py).

The api_secret is never part of a stored URL: it is appended to the request's URL at the last
moment, so a URL that reaches an exception raised while building requests cannot carry it, and
what a failed send reports is redacted before it leaves this module.

`requests` (with urllib3, a sizeable import) loads only when the first request is about to be
built (`open`): a run with nothing due never pays for it. The endpoint's shape is still checked
when the client is made, so a bad `ga4.endpoint` fails at start, never on a sender thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode

from ga4sync.core.errors import ConfigError
from ga4sync.core.secrets import RedactingFilter, redact, register_secret
from ga4sync.core.urls import check_base_url
from ga4sync.ga4.field_rules import COMPACT_JSON

if TYPE_CHECKING:  # loaded by `Ga4Client.open`, when there is something to send
    import requests

log = logging.getLogger(__name__)

ENDPOINTS = {
    "global": "https://www.google-analytics.com",
    "eu": "https://region1.google-analytics.com",
}
COLLECT_PATH = "/mp/collect"
DEBUG_PATH = "/debug/mp/collect"

OutcomeKind = Literal["sent", "retry", "unknown", "rejected", "not_sent"]
"""`not_sent`: delivery decided not to start the request (the store could not record that it
was about to go); unlike `retry`, it does not count as an attempt."""


def _guard_transport_loggers() -> None:
    """urllib3 logs every request line (query string, so api_secret) at DEBUG.

    A logger-level filter rewrites the record before any handler sees it, so the secret stays
    out even when an embedding application configures logging itself (STYLE.md #10).
    """
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", __name__):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


_guard_transport_loggers()


@dataclass(frozen=True)
class SendOutcome:
    """What one HTTP request to GA4 came to; `detail` is already free of secrets."""

    kind: OutcomeKind
    detail: str
    http_status: int | None = None
    retry_after: float | None = None
    latency_s: float = 0.0


def resolve_base_url(endpoint: str) -> str:
    """`global`, `eu` (region1), or any base URL (a proxy or server-side GTM).

    A URL given with the `/mp/collect` path (as server-side GTM docs show it) is accepted too.
    """
    base = ENDPOINTS.get(endpoint.lower(), endpoint).rstrip("/")
    for suffix in (DEBUG_PATH, COLLECT_PATH):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the form GA4's 130,000-byte limit is measured on."""
    return COMPACT_JSON.encode(payload).encode("utf-8")


class Ga4Client:
    """One pooled keep-alive session shared by all delivery workers (thread-safe for POSTs)."""

    def __init__(
        self,
        *,
        endpoint: str,
        measurement_id: str,
        api_secret: str,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        pool_size: int = 32,
        ca_file: str | None = None,
    ) -> None:
        register_secret(api_secret)
        self.base_url = resolve_base_url(endpoint)
        self.measurement_id = measurement_id
        # Appended per request (a string concatenation, cheap at hundreds of req/s), so no URL
        # kept on this object or prepared below ever holds the secret.
        self._secret_param = "&" + urlencode({"api_secret": api_secret}, quote_via=quote)
        query = urlencode({"measurement_id": measurement_id})
        self.timeout = (connect_timeout, read_timeout)
        self._query = query
        self._pool_size = max(pool_size, 1)
        self._ca_file = ca_file
        self._open_lock = threading.Lock()
        self._start_request: Callable[[], None] = _not_open
        self._request_written: Callable[[], bool] = _not_open
        self.session: requests.Session | None = None
        self._collect_template: requests.PreparedRequest | None = None
        self._debug_template: requests.PreparedRequest | None = None
        try:
            check_base_url(self.base_url)
        except ValueError as exc:
            raise ConfigError(
                f"ga4.endpoint {redact(endpoint)!r} is not a usable URL: {exc}"
            ) from None

    def open(self) -> None:
        """Open the keep-alive session (and load `requests`); a no-op once open.

        Delivery calls this on its main thread before handing a request to a sender, so a URL
        `requests` refuses is a ConfigError there, not a failed send. Thread-safe.
        """
        with self._open_lock:
            if self._collect_template is not None:
                return
            import requests
            import urllib3
            from ga4sync.pipeline.write_tracking import (
                WriteTrackingAdapter,
                request_written,
                start_request,
            )

            session = requests.Session()
            session.headers.update({"Content-Type": "application/json"})
            # No transport retries: a retried POST after a read error could double an event.
            adapter = WriteTrackingAdapter(
                pool_connections=2,
                pool_maxsize=self._pool_size,
                max_retries=urllib3.Retry(total=0, connect=0, read=False, redirect=0, status=0),
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            if self._ca_file:
                session.verify = self._ca_file
            # Proxies and CA bundles from the environment would change where the secret goes.
            session.trust_env = False
            # Prepared once and copied per request: Session.request re-merges settings, parses
            # the URL and rebuilds headers every time, a fifth of the CPU of a request.
            try:
                collect = _template(session, f"{self.base_url}{COLLECT_PATH}?{self._query}")
                debug = _template(session, f"{self.base_url}{DEBUG_PATH}?{self._query}")
            except requests.RequestException as exc:
                session.close()
                raise ConfigError(
                    f"ga4.endpoint {redact(self.base_url)!r} is not a usable URL: {_short(exc)}"
                ) from None
            self.session = session
            self._start_request, self._request_written = start_request, request_written
            self._debug_template = debug
            self._collect_template = collect  # last: it is what says "open"

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def __repr__(self) -> str:
        return f"Ga4Client(base_url={self.base_url!r}, measurement_id={self.measurement_id!r})"

    def collect(self, payload: dict[str, Any], data: bytes | None = None) -> SendOutcome:
        """POST to `/mp/collect`; never raises, every failure becomes an outcome.

        `data`: `payload` already encoded (`encode_body`), when the caller has it."""
        if self._collect_template is None:
            self.open()
        assert self._collect_template is not None
        return self._post(self._collect_template, payload, keep_body=False, data=data)

    def debug(self, payload: dict[str, Any]) -> tuple[SendOutcome, list[dict[str, Any]]]:
        """Ask `/debug/mp/collect` (never recorded by GA4) for its validation messages."""
        if self._debug_template is None:
            self.open()
        assert self._debug_template is not None
        outcome = self._post(self._debug_template, payload, keep_body=True)
        if outcome.kind != "sent":
            return outcome, []
        try:
            data = json.loads(outcome.detail or "{}")
        except ValueError:
            return SendOutcome("retry", "validation server answered with something not JSON"), []
        messages = data.get("validationMessages", []) if isinstance(data, dict) else []
        return outcome, [m for m in messages if isinstance(m, dict)]

    def _post(
        self,
        template: requests.PreparedRequest,
        payload: dict[str, Any],
        *,
        keep_body: bool,
        data: bytes | None = None,
    ) -> SendOutcome:
        prepared = template.copy()
        prepared.body = data if data is not None else encode_body(payload)
        prepared.headers["Content-Length"] = str(len(prepared.body))
        prepared.url = f"{template.url}{self._secret_param}"
        started = time.perf_counter()
        self._start_request()
        assert self.session is not None  # open before any template exists
        try:
            # Never follow a redirect: it would replay the POST, secret included, elsewhere.
            resp = self.session.send(prepared, timeout=self.timeout, allow_redirects=False)
        except Exception as exc:  # noqa: BLE001 - any failure must become an outcome
            # The outcome keeps only redacted text; the exception (whose message and request
            # carry the URL with the secret) goes no further than this frame.
            return classify_failure(exc, self._request_written(), time.perf_counter() - started)
        finally:
            prepared.url = template.url
        elapsed = time.perf_counter() - started
        status = resp.status_code
        text = resp.text[:4000] if keep_body else resp.text[:300]
        if 200 <= status < 300:
            return SendOutcome("sent", text if keep_body else "", status, latency_s=elapsed)
        if status == 429 or status >= 500:
            return SendOutcome(
                "retry",
                f"GA4 answered {status}",
                status,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                latency_s=elapsed,
            )
        return SendOutcome(
            "rejected",
            redact(f"GA4 answered {status} (the request itself was refused): {text}".strip()),
            status,
            latency_s=elapsed,
        )


def _not_open() -> Any:
    raise RuntimeError("Ga4Client.open() was not called")


def _template(session: requests.Session, url: str) -> requests.PreparedRequest:
    import requests

    return session.prepare_request(requests.Request("POST", url, data=b"{}"))


def classify_failure(exc: BaseException, written: bool, elapsed: float) -> SendOutcome:
    """`retry` when the request was not fully written (GA4 cannot act on part of a request),
    `unknown` when it was: GA4 may have it, whatever kind of error came after."""
    import requests  # loaded already: only a request can have failed

    what = _short(exc)
    if not written:
        if _failed_to_connect(exc):
            return SendOutcome("retry", f"cannot connect to GA4: {what}", latency_s=elapsed)
        if isinstance(exc, requests.exceptions.SSLError):
            return SendOutcome(
                "retry", f"TLS failure before the request was sent: {what}", latency_s=elapsed
            )
        return SendOutcome(
            "retry", f"failed before the request was fully sent: {what}", latency_s=elapsed
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return SendOutcome(
            "unknown", "read timeout: the request went out but no answer came", latency_s=elapsed
        )
    return SendOutcome("unknown", f"connection dropped after sending: {what}", latency_s=elapsed)


def _failed_to_connect(exc: BaseException) -> bool:
    """Wording only (the decision is `written`): say "cannot connect" when that is what it was."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(
        reason,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.ConnectTimeoutError
        | urllib3.exceptions.NameResolutionError
        | ConnectionRefusedError,
    )


def _short(exc: BaseException) -> str:
    """The underlying cause, redacted: urllib3's wrapper repeats the URL (with its query)."""
    import urllib3

    reason: object = exc.args[0] if exc.args else exc
    if isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    return redact(f"{type(reason).__name__}: {reason}")[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
