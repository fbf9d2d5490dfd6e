"""The bearer token for HubSpot: a fixed one (service key, legacy private app) or an OAuth
access token kept fresh with the refresh-token grant.

OAuth access tokens live 30 minutes (HubSpot's `expires_in: 1800`); a run over a large backfill,
or a daemon, outlives one. `RefreshingToken` asks `POST /oauth/v1/token`
(`grant_type=refresh_token`, form-encoded: the client secret and refresh token travel in the
body, never in a URL) for a new one before the old one expires, and again whenever HubSpot
answers 401 anyway (a token revoked or expired early). Every token it receives is registered
with `redact`, so none can reach a log line, an error or the state store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import requests
from ga4sync.connectors.net_errors import unreachable_reason
from ga4sync.core.errors import ConnectorError
from ga4sync.core.secrets import redact, register_secret
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

REFRESH_MARGIN = 300.0
"""Seconds before expiry at which a token is replaced: a page of batch reads never starts on a
token with less than five minutes left."""


class BearerToken(Protocol):
    token_calls: int
    """Requests made to HubSpot's token endpoint: OAuth plumbing, not CRM API calls, so they are
    counted apart from `api_calls` (docs/hubspot.md, "Rate limits")."""

    def current(self) -> str: ...

    def renew_after_refusal(self) -> bool:
        """A 401 came back: try to get a new token; False when this kind cannot be renewed."""
        ...


@dataclass
class FixedToken:
    """A service key or legacy private app token: it does not expire on its own."""

    token: str
    token_calls: int = field(default=0, init=False)
    """Never renewed, so never asked for."""

    def current(self) -> str:
        return self.token

    def renew_after_refusal(self) -> bool:
        return False


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str
    refresh_token: str
    token_url: str


class _TokenAnswer(BaseModel):
    """The fields of HubSpot's token response ga4sync relies on."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None


class RefreshingToken:
    """An OAuth access token renewed from the refresh token before it expires and after a 401."""

    def __init__(
        self,
        client: OAuthClient,
        *,
        ca_file: str | None = None,
        timeout: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.monotonic = monotonic
        self.refreshes = 0
        self.token_calls = 0
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify` (§0.2)
        self._session.verify = ca_file or True
        retry = Retry(
            total=3,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,
            raise_on_status=False,
        )
        self._session.mount("https://", HTTPAdapter(max_retries=retry))
        self._session.mount("http://", HTTPAdapter(max_retries=retry))

    def current(self) -> str:
        with self._lock:
            if self._token is None or self.monotonic() >= self._expires_at - REFRESH_MARGIN:
                self._refresh()
            assert self._token is not None
            return self._token

    def renew_after_refusal(self) -> bool:
        with self._lock:
            self._refresh()
        return True

    def _refresh(self) -> None:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client.client_id,
            "client_secret": self.client.client_secret,
            "refresh_token": self.client.refresh_token,
        }
        asked_at = self.monotonic()
        self.token_calls += 1
        try:
            response = self._session.post(self.client.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ConnectorError(
                f"cannot reach HubSpot's token endpoint {self.client.token_url}: "
                f"{unreachable_reason(exc)}"
            ) from None
        if response.status_code != 200:
            raise ConnectorError(_refusal_message(response))
        try:
            answer = _TokenAnswer.model_validate_json(response.content)
        except ValidationError:
            raise ConnectorError(
                f"HubSpot's token endpoint answered {response.status_code} without an "
                "access_token and expires_in; is oauth.token_url right?"
            ) from None
        register_secret(answer.access_token)
        if answer.refresh_token:
            register_secret(answer.refresh_token)
        self._token = answer.access_token
        self._expires_at = asked_at + answer.expires_in
        self.refreshes += 1

    def close(self) -> None:
        self._session.close()


def _refusal_message(response: requests.Response) -> str:
    """What HubSpot said, in its RFC 6749 fields or its older `status`/`message` ones."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("status") or body.get("error") or response.status_code)
    said = redact(str(body.get("error_description") or body.get("message") or "")[:300])
    hint = {
        "BAD_REFRESH_TOKEN": "the refresh token is wrong, revoked, or the app was uninstalled: "
        "install the app again and store the new refresh token",
        "BAD_CLIENT_ID": "check oauth.client_id and oauth.client_secret (the app's Auth tab)",
        "invalid_grant": "the refresh token is wrong, revoked, or the app was uninstalled: "
        "install the app again and store the new refresh token",
        "invalid_client": "check oauth.client_id and oauth.client_secret (the app's Auth tab)",
    }.get(code, "check oauth.client_id, oauth.client_secret and oauth.refresh_token")
    return (
        f"HubSpot refused to renew the OAuth access token ({response.status_code} {code}: "
        f"{said}); {hint}"
    )
