"""Salesforce credentials from config, and the `simple-salesforce` client they open.

Four ways in (crm-apis.md §1.1): a session id with the instance URL (no login call), username +
password + security token (SOAP login), OAuth 2.0 JWT bearer (connected app + private key), and
OAuth client credentials (connected app + secret, My Domain only). Secrets are SecretRefs, read
only here and handed straight to the client. In the three login modes simple-salesforce logs in
again by itself when a call answers `INVALID_SESSION_ID`, so a session that expires mid-run
costs one login and the run goes on; a bare session id cannot be renewed, which the error says.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from ga4sync.core.errors import ConfigError
from ga4sync.core.secrets import SecretRef, redact
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

if TYPE_CHECKING:  # the SDK (zeep, lxml) loads only when a Salesforce connector runs
    import requests
    from simple_salesforce import Salesforce


class SessionAuth(BaseModel):
    """A session id (or access token) you obtained elsewhere; it cannot be renewed."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["session"] = "session"
    session_id: SecretRef


class PasswordAuth(BaseModel):
    """Integration user's username, password and security token, through the SOAP login.

    Deprecated: Salesforce's SOAP `login()` is not available from API 65.0 and retires for all
    versions in Summer '27 (SOAP API End-of-Life Policy); use `jwt` or `client_credentials`."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["password"]
    username: str = Field(min_length=1)
    password: SecretRef
    security_token: SecretRef | None = Field(
        default=None, description="Omit only when the org trusts ga4sync's IP range."
    )


class JwtAuth(BaseModel):
    """OAuth 2.0 JWT bearer flow: connected app consumer key + the app's private key (PEM)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["jwt"]
    username: str = Field(min_length=1)
    consumer_key: SecretRef
    private_key: SecretRef = Field(description="PEM private key, e.g. `{file: keys/sf.pem}`.")


class ClientCredentialsAuth(BaseModel):
    """OAuth 2.0 client credentials: connected app key + secret; needs a My Domain `domain`."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["client_credentials"]
    consumer_key: SecretRef
    consumer_secret: SecretRef


def _auth_method(value: Any) -> str:
    """`method` picks the model; without one a `session_id` block means `session`.

    The tag is `method=...`, not the bare method: pydantic puts the tag in error locations, and
    a bare `password` tag reads as the `password` field, so an error in `security_token` was
    reported at the password's line.
    """
    if isinstance(value, dict):
        return f"method={value.get('method', 'session')}"
    return f"method={getattr(value, 'method', 'session')}"


PASSWORD_RETIRED = (
    "Salesforce's SOAP login() is not available from API 65.0 and retires for all API "
    "versions in Summer '27 (Salesforce, SOAP API End-of-Life Policy: "
    "https://developer.salesforce.com/docs/platform/api/guide/api-eol-soap.html)."
)
PASSWORD_DEPRECATED = (
    "auth method `password` is deprecated: " + PASSWORD_RETIRED + " Switch to `method: jwt` "
    "or `method: client_credentials` before then (README, Salesforce)"
)

AUTH_METHODS = ("session", "password", "jwt", "client_credentials")

SalesforceAuth = Annotated[
    Annotated[SessionAuth, Tag("method=session")]
    | Annotated[PasswordAuth, Tag("method=password")]
    | Annotated[JwtAuth, Tag("method=jwt")]
    | Annotated[ClientCredentialsAuth, Tag("method=client_credentials")],
    Discriminator(_auth_method),
]


class LoginTarget(BaseModel):
    """Where logins go: `domain` (login, test, or your My Domain like `acme.my`) or a URL."""

    domain: str = "login"
    login_url: str | None = None
    instance_url: str | None = None


def login_domain(target: LoginTarget) -> str:
    """The `domain` simple-salesforce puts in `https://{domain}.salesforce.com/...`.

    A `login_url` such as `https://acme.my.salesforce.com` becomes `acme.my`; any other URL
    (a proxy, or the loopback sandbox `https://127.0.0.1:8443/login`) is used as a prefix, so
    the login goes to `https://127.0.0.1:8443/login.salesforce.com/services/...`, whose path
    suffix the sandbox matches (crm-apis.md §1.1).
    """
    if not target.login_url:
        return target.domain
    parts = urlsplit(target.login_url)
    if parts.scheme != "https":
        raise ConfigError(
            f"login_url {target.login_url} must start with https:// (Salesforce logins are TLS)"
        )
    host = parts.netloc
    path = parts.path.rstrip("/")
    if host.endswith(".salesforce.com") and not path:
        return host[: -len(".salesforce.com")]
    return host + path


def open_client(
    auth: SessionAuth | PasswordAuth | JwtAuth | ClientCredentialsAuth,
    target: LoginTarget,
    *,
    session: requests.Session,
    version: str,
    secret_base_dir: Path | None,
) -> Salesforce:
    """A logged-in client. Login failures become ConfigError naming what to check."""
    import requests
    from ga4sync.connectors.net_errors import unreachable_reason
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

    def secret(ref: SecretRef) -> str:
        return ref.resolve(secret_base_dir).get_secret_value()

    domain = login_domain(target)
    try:
        if isinstance(auth, SessionAuth):
            if not target.instance_url:
                raise ConfigError("auth method `session` needs `instance_url` (your org's URL)")
            return Salesforce(
                session_id=secret(auth.session_id),
                instance_url=target.instance_url,
                session=session,
                version=version,
            )
        if isinstance(auth, PasswordAuth):
            token = secret(auth.security_token) if auth.security_token else ""
            return Salesforce(
                username=auth.username,
                password=secret(auth.password),
                security_token=token,
                domain=domain,
                session=session,
                version=version,
            )
        if isinstance(auth, JwtAuth):
            return Salesforce(
                username=auth.username,
                consumer_key=secret(auth.consumer_key),
                privatekey=secret(auth.private_key),
                domain=domain,
                session=session,
                version=version,
            )
        if domain in ("login", "test"):
            raise ConfigError(
                "auth method `client_credentials` needs your org's My Domain, e.g. "
                "`domain: acme.my` or `login_url: https://acme.my.salesforce.com` "
                "(Salesforce refuses client credentials on login/test.salesforce.com)"
            )
        return Salesforce(
            consumer_key=secret(auth.consumer_key),
            consumer_secret=secret(auth.consumer_secret),
            domain=domain,
            session=session,
            version=version,
        )
    except SalesforceAuthenticationFailed as exc:
        if isinstance(auth, PasswordAuth) and exc.code == "INVALID_OPERATION":
            raise ConfigError(
                f"Salesforce refused the SOAP login of auth method `password` at api_version "
                f"{version} ({exc.code}: {exc.auth_message}): {PASSWORD_RETIRED} Switch to "
                "`method: jwt` (connected app + certificate) or `method: client_credentials` "
                "(connected app + secret, with your My Domain); until then `api_version: "
                "'64.0'` still logs in"
            ) from None
        raise ConfigError(
            redact(
                f"Salesforce login ({auth.method}) failed: {exc.code}: {exc.auth_message}; "
                "check the credentials, the connected app, and `domain` (test for sandboxes)"
            )
        ) from None
    except requests.RequestException as exc:
        raise ConfigError(
            f"cannot reach Salesforce to log in ({auth.method}, domain {domain}): "
            f"{unreachable_reason(exc)}"
        ) from None
