"""The HubSpot calls ga4sync makes, through the real `hubspot-api-client`, with HubSpot's limits.

Retries are split by layer (crm-apis.md §0.4, §6.2):
- transport (connect/read errors) is urllib3 `Retry` inside the SDK, with `allowed_methods=None`
  because search and batch read are POSTs that are safe to repeat, and `raise_on_status=False`
  so an HTTP error reaches the SDK as an `ApiException` instead of a bare `MaxRetryError`;
- HTTP answers are classified here, on `.status` (each `hubspot.crm.*` module has its own
  `ApiException` class) and the 429 body's `policyName`, and retried with tenacity: SECONDLY
  (search, no headers) waits `search_backoff`, TEN_SECONDLY_ROLLING waits the interval HubSpot
  names in `X-HubSpot-RateLimit-Interval-Milliseconds`, DAILY stops the run (`QuotaExhausted`),
  5xx backs off exponentially. `Retry-After`, when present, wins.
Search is also paced on our side (`search_rate` per second) so a sync rarely meets the 429 at all.
Every HTTP attempt is counted in `usage.calls`; requests for an OAuth token are counted apart
(`usage.extra["token_calls"]`). The bearer token comes from `hubspot_auth.py`:
an OAuth token is renewed before it expires and once more after a 401. Each answer's `Date`
header is kept as `server_time`: search windows are bounded by HubSpot's clock, not ours.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from ga4sync.connectors.base import ApiUsage
from ga4sync.connectors.hubspot_auth import BearerToken
from ga4sync.connectors.net_errors import unreachable_reason
from ga4sync.core.errors import ConnectorError, QuotaExhausted
from ga4sync.core.secrets import redact
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry


@dataclass(frozen=True)
class ApiPolicy:
    """How hard to push HubSpot; the defaults match a Professional private app."""

    search_rate: float = 4.0
    """Search requests per second we allow ourselves (HubSpot refuses above 5/s per account)."""
    max_attempts: int = 8
    search_backoff: float = 1.0
    burst_backoff: float = 10.0
    """Wait after a TEN_SECONDLY_ROLLING 429 when HubSpot does not name its interval."""
    server_error_backoff: float = 1.0
    timeout: float = 30.0


@dataclass(frozen=True)
class HistoryValue:
    """One entry of `propertiesWithHistory`: a value the property had from `timestamp` on."""

    value: str | None
    timestamp: datetime | None
    source_type: str


@dataclass(frozen=True)
class HsObject:
    """A CRM record as search or batch read returns it; property values are strings or None."""

    id: str
    properties: dict[str, str | None]
    history: dict[str, list[HistoryValue]]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> HsObject:
        history = {
            name: [
                HistoryValue(
                    e.get("value"), parse_hs_time(e.get("timestamp")), str(e.get("sourceType"))
                )
                for e in entries or []
            ]
            for name, entries in (raw.get("propertiesWithHistory") or {}).items()
        }
        rid = raw.get("id")
        return cls(
            "" if rid in (None, "") else str(rid), dict(raw.get("properties") or {}), history
        )


@dataclass(frozen=True)
class SearchPage:
    results: list[HsObject]
    next_after: int | None
    """`paging.next.after`: the offset of the next page, None on the last page."""
    total: int


def parse_hs_time(value: Any) -> datetime | None:
    """HubSpot datetimes are ISO strings (`...T10:00:05.123Z`) or epoch milliseconds."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if text.isdigit():
            ms = int(text)
            return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class RetryableAnswer(Exception):
    """A 429 or 5xx: try again after `wait` seconds."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


class Pacer:
    """At most `rate` calls per second, spaced evenly; `sleep` is injectable for tests."""

    def __init__(self, rate: float, sleep: Callable[[float], None]) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            self.sleep(delay)


class HubspotApi:
    """One authenticated client per run; every method returns SDK models, raises our errors."""

    def __init__(
        self,
        *,
        token: BearerToken,
        host: str,
        policy: ApiPolicy,
        ca_file: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        transport = Retry(
            total=3,
            connect=3,
            read=3,
            status=0,
            allowed_methods=None,
            raise_on_status=False,
            backoff_factor=0.2,
        )
        self.token = token
        self._bearer = token.current()
        options: dict[str, Any] = {"access_token": self._bearer, "host": host, "retry": transport}
        if ca_file:
            options["ssl_ca_cert"] = ca_file
        # Imported here: the SDK costs ~14 MB of RSS, and every ga4sync process loads the
        # connector registry whether or not it talks to HubSpot.
        from hubspot import HubSpot

        self.client = HubSpot(**options)
        self.policy = policy
        self.usage = ApiUsage()
        self.usage.extra.update({"search": "0", "batch_read": "0", "rate_limited": "0"})
        self._note_token_calls()
        self._sleep = sleep
        self._search_pacer = Pacer(policy.search_rate, sleep)
        self._kw: dict[str, Any] = {
            "_request_timeout": policy.timeout,
            "_preload_content": False,
        }
        self._apis: dict[str, Any] = {}
        self.server_time: datetime | None = None
        """HubSpot's clock, from the `Date` header of the latest answer."""
        self._renewed_in_call = False

    def _api(self, name: str, make: Callable[[Any], Any]) -> Any:
        """SDK API objects, made once: each SDK property access builds a new connection pool."""
        if name not in self._apis:
            self._apis[name] = make(self.client.crm)
        return self._apis[name]

    # -- endpoints ---------------------------------------------------------------------------
    # Answers are read as raw JSON (`_preload_content=False`): the SDK's model layer parses every
    # timestamp with dateutil, which costs more than the HTTP call itself for history reads.
    def search(self, object_type: str, body: dict[str, Any]) -> SearchPage:
        """One search page."""
        api = self._api("search", lambda crm: crm.objects.search_api)

        from hubspot.crm.objects import PublicObjectSearchRequest

        def call() -> Any:
            self._search_pacer.wait()
            return api.do_search(object_type, PublicObjectSearchRequest(**body), **self._kw)

        data = self._call("search", call)
        nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
        if nxt is not None and not str(nxt).isdigit():
            raise ConnectorError(
                f"HubSpot search sent a paging cursor that is not an offset ({str(nxt)[:40]!r})"
            )
        return SearchPage(
            results=[HsObject.from_json(r) for r in data.get("results") or []],
            next_after=int(nxt) if nxt is not None else None,
            total=int(data.get("total") or 0),
        )

    def batch_read(
        self, object_type: str, ids: list[str], properties: list[str], history: list[str]
    ) -> list[HsObject]:
        """Records by id; archived or unknown ids are left out (HubSpot answers 207 for them)."""
        from hubspot.crm.objects import BatchReadInputSimplePublicObjectId

        request = BatchReadInputSimplePublicObjectId(
            inputs=[{"id": i} for i in ids],
            properties=properties,
            properties_with_history=history,
        )
        api = self._api("batch", lambda crm: crm.objects.batch_api)
        data = self._call(
            "batch_read", lambda: api.read(object_type, request, archived=False, **self._kw)
        )
        return [HsObject.from_json(r) for r in data.get("results") or []]

    def pipelines(self, object_type: str) -> list[dict[str, Any]]:
        """`GET /crm/v3/pipelines/{object}`: pipelines with their stages (`id`, `label`)."""
        api = self._api("pipelines", lambda crm: crm.pipelines.pipelines_api)
        data = self._call("pipelines", lambda: api.get_all(object_type, **self._kw))
        return list(data.get("results") or [])

    def properties(self, object_type: str) -> list[dict[str, Any]]:
        """`GET /crm/v3/properties/{object}`: property definitions (`name`, `options`, ...)."""
        api = self._api("properties", lambda crm: crm.properties.core_api)
        data = self._call("properties", lambda: api.get_all(object_type, **self._kw))
        return list(data.get("results") or [])

    def server_now(self, object_type: str) -> datetime:
        """HubSpot's current time: the last answer's `Date`, or one cheap read to learn it
        (`GET /crm/v3/objects/{object}?limit=1`); the local clock if a proxy strips `Date`."""
        if self.server_time is None:
            api = self._api("basic", lambda crm: crm.objects.basic_api)
            self._call(
                "list", lambda: api.get_page(object_type, limit=1, archived=False, **self._kw)
            )
        return self.server_time or datetime.now(UTC)

    def property_definition(self, object_type: str, name: str) -> dict[str, Any] | None:
        """One property definition, or None when the object has no such property."""
        api = self._api("properties", lambda crm: crm.properties.core_api)
        try:
            return self._call("properties", lambda: api.get_by_name(object_type, name, **self._kw))
        except _NotFound:
            return None

    # -- the retry loop ------------------------------------------------------------------------
    def _call(self, kind: str, fn: Callable[[], Any]) -> dict[str, Any]:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return exc.wait if isinstance(exc, RetryableAnswer) else 0.0

        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=wait,
            retry=retry_if_exception_type(RetryableAnswer),
            sleep=self._sleep,
            reraise=True,
        )
        self._renewed_in_call = False
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(kind, fn, attempt.retry_state.attempt_number)
        except RetryableAnswer as exc:
            raise ConnectorError(
                f"HubSpot kept refusing {kind} after {self.policy.max_attempts} attempts: {exc}"
            ) from None
        finally:
            self._note_token_calls()  # a renewal before it, or after a 401, failed or not
        raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises

    def _attempt(self, kind: str, fn: Callable[[], Any], attempt: int) -> dict[str, Any]:
        self._use_token(self.token.current())
        self.usage.calls += 1
        if kind in ("search", "batch_read"):
            self.usage.extra[kind] = str(int(self.usage.extra[kind]) + 1)
        try:
            response = fn()
        except Urllib3Error as exc:
            raise ConnectorError(
                f"cannot reach HubSpot at {self.client_host}: {unreachable_reason(exc)}"
            ) from None
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status is None:
                raise
            raise self._classify(kind, exc, int(status), attempt) from None
        self._note_quota(response.headers)
        self._note_date(response.headers)
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            raise RetryableAnswer(f"{kind}: HubSpot sent a body that is not JSON", 1.0) from None
        if not isinstance(data, dict):
            raise ConnectorError(f"HubSpot {kind}: expected a JSON object")
        return data

    def _note_token_calls(self) -> None:
        """Token endpoint requests, apart from `calls`: HubSpot counts API calls made with a
        token against its limits, not the OAuth requests that get one."""
        self.usage.extra["token_calls"] = str(self.token.token_calls)

    def _use_token(self, bearer: str) -> None:
        """Put a renewed token into the SDK: each API object holds its own Configuration."""
        if bearer == self._bearer:
            return
        self._bearer = bearer
        self.client.config["access_token"] = bearer
        for api in self._apis.values():
            api.api_client.configuration.access_token = bearer

    def _note_date(self, headers: Any) -> None:
        raw = headers.get("Date") if headers else None
        try:
            when = parsedate_to_datetime(raw) if raw else None
        except (TypeError, ValueError):
            when = None
        if when is not None:
            self.server_time = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)

    @property
    def client_host(self) -> str:
        return str(self.client.config.get("host") or "https://api.hubapi.com")

    def _classify(self, kind: str, exc: Any, status: int, attempt: int) -> Exception:
        headers = getattr(exc, "headers", None) or {}
        body = _json_body(getattr(exc, "body", None))
        message = redact(str(body.get("message") or getattr(exc, "reason", "") or "")[:300])
        category = body.get("category") or body.get("errorType") or ""
        retry_after = _float(headers.get("Retry-After"))
        if status == 429:
            self.usage.extra["rate_limited"] = str(int(self.usage.extra["rate_limited"]) + 1)
            policy = str(body.get("policyName") or "")
            if policy == "DAILY":
                self._note_quota(headers)
                return QuotaExhausted(
                    f"HubSpot's daily API limit is used up ({message}); the run stops here and "
                    "resumes from the last captured page once the limit resets"
                )
            interval = _float(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
            if policy == "SECONDLY" or (kind == "search" and policy != "TEN_SECONDLY_ROLLING"):
                wait = self.policy.search_backoff  # search 429s carry no rate-limit headers
            else:
                wait = interval / 1000 if interval else self.policy.burst_backoff
            return RetryableAnswer(f"429 {policy or 'rate limit'}: {message}", retry_after or wait)
        if status >= 500 or status == 0:
            backoff = self.policy.server_error_backoff * 2 ** (attempt - 1)
            return RetryableAnswer(f"{status} {message}", retry_after or backoff)
        if status == 401:
            if not self._renewed_in_call and self.token.renew_after_refusal():
                self._renewed_in_call = True
                return RetryableAnswer(f"401 {category}: token renewed", 0.0)
            return ConnectorError(_unauthorised(category, message))
        if status == 403:
            return ConnectorError(_forbidden(kind, category, message, body))
        if status == 404:
            return _NotFound(f"HubSpot {kind}: 404 {message}")
        return ConnectorError(f"HubSpot rejected a {kind} request ({status} {category}): {message}")

    def _note_quota(self, headers: Any) -> None:
        if not headers:
            return
        daily = _float(headers.get("X-HubSpot-RateLimit-Daily"))
        left = _float(headers.get("X-HubSpot-RateLimit-Daily-Remaining"))
        if daily is not None and left is not None:
            self.usage.limit, self.usage.used = int(daily), int(daily - left)

    def close(self) -> None:
        """Close the keep-alive connections of every SDK API object this run made."""
        for api in self._apis.values():
            api.api_client.rest_client.pool_manager.clear()
        self._apis.clear()


class _NotFound(ConnectorError):
    pass


def _unauthorised(category: str, message: str) -> str:
    if category == "EXPIRED_AUTHENTICATION":
        advice = (
            "this is an OAuth access token, which HubSpot expires after 30 minutes: configure "
            "`oauth:` (client_id, client_secret, refresh_token) instead of `access_token`, and "
            "ga4sync renews it"
        )
    else:
        advice = (
            "check that `access_token` names a current service key or legacy private app "
            "token (Development > Keys > Service keys, or Development > Legacy apps > Auth)"
        )
    return f"HubSpot refused the access token (401 {category}: {message}); {advice}"


def missing_scopes(body: dict[str, Any]) -> list[str]:
    """The scopes a 403 says are needed: HubSpot lists them in `errors[].context` as
    `requiredGranularScopes` (newer answers) or `requiredScopes` (older ones), any one of which
    is enough, sometimes also in the top-level `context`."""
    contexts = [body.get("context")]
    contexts += [e.get("context") for e in body.get("errors") or [] if isinstance(e, dict)]
    found: list[str] = []
    for context in contexts:
        if not isinstance(context, dict):
            continue
        for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
            for scope in context.get(key) or []:
                if isinstance(scope, str) and scope not in found:
                    found.append(scope)
    return found


def _forbidden(kind: str, category: str, message: str, body: dict[str, Any]) -> str:
    scopes = missing_scopes(body)
    if category == "MISSING_SCOPES" or scopes:
        named = ", ".join(f"`{s}`" for s in scopes) or "(HubSpot named none)"
        return (
            f"HubSpot refused {kind}: the token lacks a scope it needs (403 MISSING_SCOPES; "
            f"HubSpot asks for one of {named}). Add it to the service key or app (its Scopes "
            "or Auth tab), then copy the new token (an OAuth app must be installed again)"
        )
    return f"HubSpot refused {kind} (403 {category}: {message}); check the token's scopes"


def _json_body(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            if "<html" in body[:500].lower() or "<!doctype" in body[:500].lower():
                title = re.search(r"<title>([^<]{1,120})</title>", body, re.IGNORECASE)
                page = f" ({title.group(1).strip()})" if title else ""
                return {"message": f"an HTML page{page} instead of HubSpot's JSON (a proxy?)"}
            return {"message": body[:300]}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
