"""HubSpot's OAuth token endpoint and access-token expiry, by the sandbox's injected clock.

HubSpot OAuth access tokens live 30 minutes (`expires_in: 1800`); a refresh token, with the
app's client id and secret, buys a new one at `POST /oauth/v1/token` (form-encoded,
`grant_type=refresh_token`). An expired token is refused with 401 `EXPIRED_AUTHENTICATION`
naming when it expired; a wrong refresh token with 400 `BAD_REFRESH_TOKEN` in the RFC 6749 shape
HubSpot added in 2025. Bodies follow tests/contracts/hubspot/ (README there names the sources).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from ga4sync.sandbox.http import Request, Response
from ga4sync.sandbox.hubspot_data import hs_time

TOKEN_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class OAuthApp:
    """The one app (and install) the sandbox account knows."""

    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    refresh_token: str = "sandbox-refresh-token"
    lifetime: timedelta = TOKEN_LIFETIME


class TokenIssuer:
    """Issues access tokens on refresh and tells a live token from an expired or unknown one."""

    def __init__(self, app: OAuthApp | None = None) -> None:
        self.app = app or OAuthApp()
        self.issued: dict[str, datetime] = {}
        """access token -> when it expires."""
        self.refreshes = 0
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def token_endpoint(self, req: Request, now: datetime) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return _oauth_error(
                "unsupported_grant_type",
                "UNSUPPORTED_GRANT_TYPE",
                f"grant_type {form.get('grant_type')!r} is not supported here",
            )
        if (form.get("client_id"), form.get("client_secret")) != (
            self.app.client_id,
            self.app.client_secret,
        ):
            return _oauth_error(
                "invalid_client", "BAD_CLIENT_ID", "missing or invalid client_id or client_secret"
            )
        if form.get("refresh_token") != self.app.refresh_token:
            # Verbatim wording of HubSpot's changelog example (contracts/hubspot/README.md).
            return _oauth_error(
                "invalid_grant", "BAD_REFRESH_TOKEN", "refresh token is invalid, expired or revoked"
            )
        with self._lock:
            self.refreshes += 1
            token = f"sandbox-oauth-{next(self._serial)}-{uuid.uuid4().hex[:12]}"
            self.issued[token] = now + self.app.lifetime
        return Response.json(
            {
                "token_type": "bearer",
                "refresh_token": self.app.refresh_token,
                "access_token": token,
                "expires_in": int(self.app.lifetime.total_seconds()),
            }
        )

    def refusal(self, token: str, now: datetime) -> Response | None:
        """None for a live issued token; HubSpot's 401 for an expired one; None if unknown
        (the caller checks its static tokens next)."""
        with self._lock:
            expires = self.issued.get(token)
        if expires is None or now < expires:
            return None
        ago = int((now - expires).total_seconds())
        body = {
            "status": "error",
            "message": f"The OAuth token used to make this call expired {ago} second(s) ago.",
            "correlationId": str(uuid.uuid4()),
            "category": "EXPIRED_AUTHENTICATION",
            "context": {"expire time": [hs_time(expires)]},
        }
        return Response.json(body, 401)

    def knows(self, token: str) -> bool:
        with self._lock:
            return token in self.issued


def _oauth_error(error: str, status: str, description: str) -> Response:
    body = {
        "error": error,
        "error_description": description,
        "status": status,
        "message": description,
    }
    return Response.json(body, 400)
