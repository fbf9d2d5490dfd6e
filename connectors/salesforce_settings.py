"""Salesforce connector settings: what the config validates, without the connector.

Kept apart from `salesforce.py` so that loading a config (every `ga4sync` command) does not
import the connector, its readers and tenacity when no Salesforce connector runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from ga4sync.connectors.base import ConnectorSettings
from ga4sync.connectors.salesforce_auth import AUTH_METHODS, SalesforceAuth, SessionAuth
from ga4sync.core.durations import Duration
from ga4sync.core.urls import check_base_url
from pydantic import Field, field_validator, model_validator


class SalesforceSettings(ConnectorSettings):
    type: Literal["salesforce"] = "salesforce"
    instance_url: str | None = Field(
        default=None,
        description="e.g. https://yourorg.my.salesforce.com; required for `auth: session`, "
        "the login answer names it otherwise.",
    )
    auth: SalesforceAuth
    domain: str = Field(
        default="login",
        pattern=r"^[A-Za-z0-9.-]+$",
        description="Login domain: `login` (production), `test` (sandbox orgs) or your My "
        "Domain prefix, e.g. `acme.my`.",
    )
    login_url: str | None = Field(
        default=None,
        description="Full login base URL instead of `domain`, e.g. "
        "https://acme.my.salesforce.com (or a proxy).",
    )
    api_version: str = Field(default="59.0", pattern=r"^\d+\.\d$")
    ca_file: str | None = Field(
        default=None, description="Extra CA bundle to trust (the sandbox's throwaway CA)."
    )
    page_size: int = Field(default=2000, ge=200, le=2000)
    timeout: Duration = Field(
        default=timedelta(seconds=150),
        description="Per-request timeout; Salesforce itself gives up on a query after 120 s "
        "(QUERY_TIMEOUT), so a request still silent after this is stuck.",
    )
    busy_backoff: Duration = Field(
        default=timedelta(seconds=5),
        description="First pause after Salesforce's concurrency limit (REQUEST_LIMIT_EXCEEDED "
        "naming a Concurrent... limit, e.g. ConcurrentPerOrgLongTxn); doubled on each of "
        "`busy_attempts` tries. The daily quota (TotalRequests) is never retried.",
    )
    busy_attempts: int = Field(default=5, ge=1, le=20, description="Tries per call when busy.")
    min_remaining_calls: int = Field(
        default=0,
        ge=0,
        description="Stop the run (cleanly, resumable) before the org's remaining daily API "
        "calls drop below this, leaving room for your other integrations.",
    )

    @field_validator("instance_url", "login_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        # At 0s every call fails locally before Salesforce sees it.
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s; the default is 150s")
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_block(cls, value: object) -> object:
        """Refuse text here ourselves: pydantic's own error would quote it, and a session id
        pasted straight under `auth:` is exactly that text."""
        if not isinstance(value, dict):
            raise ValueError(
                "`auth:` is a block: `method:` (session, password, jwt or client_credentials) "
                "and its secrets, each as `env: NAME` or `file: path`; what is written here is "
                "not shown because it may be a secret"
            )
        method = value.get("method", "session")
        if method not in AUTH_METHODS:
            raise ValueError(
                f"`auth.method` must be one of {', '.join(AUTH_METHODS)}; what is written "
                "there is not shown because it may be a secret"
            )
        return value

    @model_validator(mode="after")
    def _session_needs_instance(self) -> SalesforceSettings:
        if isinstance(self.auth, SessionAuth) and not self.instance_url:
            raise ValueError("auth method `session` needs `instance_url` (your org's URL)")
        return self
