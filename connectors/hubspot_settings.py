"""HubSpot connector settings: what the config validates, without the API client.

Kept apart from `hubspot.py` so that loading a config (every `ga4sync` command) does not import
the HubSpot client, requests and tenacity when no HubSpot connector runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from ga4sync.connectors.base import ConnectorSettings
from ga4sync.core.durations import Duration
from ga4sync.core.secrets import SecretRef
from ga4sync.core.urls import check_base_url
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SEARCH_CAP = 10_000
"""Results one search query can page through (HubSpot's limit; hubspot_search splits past it)."""


class HubspotOAuth(BaseModel):
    """An installed OAuth app: ga4sync renews its 30-minute access tokens itself."""

    model_config = ConfigDict(extra="forbid")

    client_id: SecretRef = Field(description="The app's client ID (`env:` or `file:`).")
    client_secret: SecretRef = Field(description="The app's client secret (`env:` or `file:`).")
    refresh_token: SecretRef = Field(
        description="The refresh token from the app's install (`env:` or `file:`)."
    )
    token_url: str | None = Field(
        default=None,
        description="Token endpoint; default `{host}/oauth/v1/token` (HubSpot retires v1 on "
        "2027-02-16: `{host}/oauth/2026-03/token` is its successor).",
    )

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)


class HubspotSettings(ConnectorSettings):
    """A HubSpot account; which object and property to watch comes from the mapping file."""

    type: Literal["hubspot"] = "hubspot"
    access_token: SecretRef | None = Field(
        default=None,
        description="Service key or legacy private app token: `env: NAME` or `file: path`. "
        "Scopes: crm.objects.deals.read, crm.objects.contacts.read, and "
        "crm.schemas.deals.read / crm.schemas.contacts.read for pipelines and properties. "
        "For an OAuth app use `oauth:` instead (its access tokens expire after 30 minutes).",
    )
    oauth: HubspotOAuth | None = Field(
        default=None, description="An OAuth app's client id, secret and refresh token."
    )
    search_lag: Duration = Field(
        default=timedelta(minutes=5),
        description="Searches stop this far before HubSpot's current time: a change is read "
        "once the search index has had this long to place it (docs/hubspot.md).",
    )
    host: str = Field(
        default="https://api.hubapi.com",
        description="API base URL; only changed for the local sandbox or a proxy.",
    )
    ca_file: str | None = Field(default=None, description="Extra CA to trust (sandbox only).")
    modified_property: str | None = Field(
        default=None,
        description="Property the search filters on; default hs_lastmodifieddate "
        "(lastmodifieddate for contacts).",
    )
    page_size: int = Field(default=200, ge=1, le=200, description="Search page size (max 200).")
    batch_size: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Ids per batch read. HubSpot caps history-bearing reads at 50 per page "
        "(the SDK's own limit); batch read without history takes 100.",
    )
    search_rate: float = Field(
        default=4.0,
        gt=0,
        description="Search requests per second ga4sync allows itself; HubSpot allows 5/s per "
        "account, shared by every app.",
    )
    search_cap: int = Field(
        default=SEARCH_CAP,
        ge=1,
        le=SEARCH_CAP,
        description="Results one search query can page through (HubSpot: 10,000); windows "
        "with more are split. Lower it only to test the split.",
    )
    max_attempts: int = Field(default=8, ge=1, le=50, description="Tries per call on 429/5xx.")
    search_backoff: Duration = Field(
        default=timedelta(seconds=1), description="Wait after a search 429 (SECONDLY)."
    )
    burst_backoff: Duration = Field(
        default=timedelta(seconds=10),
        description="Wait after a TEN_SECONDLY_ROLLING 429 when HubSpot names no interval.",
    )
    timeout: Duration = Field(default=timedelta(seconds=30), description="Per-request timeout.")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: timedelta) -> timedelta:
        # At 0s every call fails locally before HubSpot sees it.
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s; the default is 30s")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> HubspotSettings:
        if (self.access_token is None) == (self.oauth is None):
            raise ValueError(
                "give exactly one of `access_token` (a service key or legacy private app "
                "token) or `oauth` (client_id, client_secret, refresh_token)"
            )
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("host must be a URL such as https://api.hubapi.com")
        return check_base_url(value).rstrip("/")
