"""The config file (`ga4sync.yaml`): pydantic models, secrets by reference, errors with lines."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from ga4sync.connectors.registry import AnyConnectorSettings
from ga4sync.core.durations import Duration
from ga4sync.core.errors import ConfigError
from ga4sync.core.secrets import SecretRef
from ga4sync.core.validation_errors import format_validation_error
from ga4sync.core.yamlsource import YamlSourceError, load_yaml_file
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG = "ga4sync.yaml"


class Ga4Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measurement_id: str = Field(pattern=r"^G-[A-Z0-9]{4,20}$", description="e.g. G-ABC123XYZ")
    api_secret: SecretRef = Field(description="Where the Measurement Protocol API secret lives.")
    endpoint: str = Field(
        default="global",
        description="`global`, `eu` (region1), or a base URL (proxy / server-side GTM).",
    )
    ca_file: str | None = Field(default=None, description="Extra CA to trust (sandbox only).")
    workers: int = Field(default=32, ge=1, le=256)
    connect_timeout: Duration = timedelta(seconds=5)
    read_timeout: Duration = timedelta(seconds=15)
    max_attempts: int = Field(default=8, ge=1, le=100)
    lease: Duration = Field(
        default=timedelta(minutes=5),
        description="How long a claimed row may stay `sending` before a crashed sender's row "
        "becomes `unknown` (must exceed the time a request can take, read_timeout included).",
    )
    validate_remote: bool = Field(
        default=False,
        description="Check each mapping's first events against /debug/mp/collect before sending.",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v.lower() in ("global", "eu") or v.startswith(("https://", "http://")):
            return v
        raise ValueError("endpoint must be `global`, `eu`, or a URL starting with https://")


class StateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        default="sqlite:///ga4sync.db",
        description="sqlite:///file.db or postgresql+psycopg://user@host/db",
    )


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ga4: Ga4Settings
    state: StateSettings = StateSettings()
    old_events: Literal["skip", "clamp"] = Field(
        default="skip", description="Events older than GA4's 72 h window: skip or clamp."
    )
    connectors: list[Annotated[AnyConnectorSettings, Field(discriminator="type")]] = Field(
        min_length=1
    )

    path: Path | None = Field(default=None, exclude=True)

    @field_validator("connectors")
    @classmethod
    def _unique(cls, v: list[AnyConnectorSettings]) -> list[AnyConnectorSettings]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"connector names must be unique; repeated: {', '.join(dupes)}")
        return v

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, relative: str) -> Path:
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else self.base_dir / p

    def connector(self, name: str) -> AnyConnectorSettings:
        for c in self.connectors:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.connectors)
        raise ConfigError(f"no connector named `{name}` in {self.path}; known: {known}")

    def state_url(self) -> str:
        """GA4SYNC_STATE_URL wins, so a deployment can point at PostgreSQL without editing."""
        url = os.environ.get("GA4SYNC_STATE_URL") or self.state.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///") :]
            if rel and rel != ":memory:":
                url = "sqlite:///" + str(self.resolve(rel))
        return url


def load_config(path: str | Path | None = None) -> Config:
    path = Path(path or os.environ.get("GA4SYNC_CONFIG") or DEFAULT_CONFIG)
    if not path.exists():
        raise ConfigError(
            f"config file {path} not found; copy ga4sync.example.yaml to {path} "
            "(or pass --config), or try `ga4sync demo` first"
        )
    try:
        doc = load_yaml_file(path)
    except YamlSourceError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}:1:1: the config file must be a block of keys (ga4, connectors)")
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(doc, exc, Config)) from None
    config.path = path.resolve()
    return config
