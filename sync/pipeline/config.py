"""The config file (`ga4sync.yaml`): pydantic models, secrets by reference, errors with lines."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from ga4sync.connectors.registry import AnyConnectorSettings
from ga4sync.core.ca_files import ca_file_problems
from ga4sync.core.durations import Duration
from ga4sync.core.errors import ConfigError
from ga4sync.core.secrets import SecretRef
from ga4sync.core.urls import check_base_url
from ga4sync.core.validation_errors import dotted, format_validation_error
from ga4sync.core.yamlsource import Loc, YamlDocument, YamlSourceError, load_yaml_file
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

DEFAULT_CONFIG = "ga4sync.yaml"
MIN_TIMEOUT = timedelta(milliseconds=100)
MAX_WORKERS = 256


class Ga4Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measurement_id: str = Field(pattern=r"^G-[A-Z0-9]{4,20}$", description="e.g. G-ABC123XYZ")
    api_secret: SecretRef = Field(description="Where the Measurement Protocol API secret lives.")
    endpoint: str = Field(
        default="global",
        description="`global`, `eu` (region1), or a base URL (proxy / server-side GTM).",
    )
    ca_file: str | None = Field(default=None, description="Extra CA to trust (sandbox only).")
    workers: int = Field(
        default=32,
        strict=True,  # YAML `true` is not a number of requests (lax mode reads 1)
        ge=1,
        le=256,
        description="Requests to GA4 in flight at once to start with; the number then moves "
        "between min_workers and max_workers with GA4's answers (fewer on 429s, 5xx and "
        "slower answers, more while answers stay quick).",
    )
    max_workers: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_WORKERS,
        description="The most requests in flight at once (default: twice `workers`, at most "
        f"{MAX_WORKERS}). Equal to `workers` and min_workers: a fixed number.",
        validate_default=True,
    )
    min_workers: int = Field(
        default=1,
        strict=True,
        ge=1,
        le=MAX_WORKERS,
        description="The fewest requests in flight at once, however hard GA4 pushes back.",
    )
    connect_timeout: Duration = timedelta(seconds=5)
    read_timeout: Duration = timedelta(seconds=15)
    max_attempts: int = Field(default=8, ge=1, le=100)
    lease: Duration = Field(
        default=timedelta(minutes=5),
        description="How long a claimed row may stay `sending` before a crashed sender's row "
        "becomes `unknown` (must exceed the time a request can take, read_timeout included).",
        validate_default=True,
    )
    validate_remote: bool = Field(
        default=False,
        description="Check each mapping's first events against /debug/mp/collect before sending.",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v.lower() in ("global", "eu"):
            return v
        if not v.lower().startswith(("https://", "http://")):
            raise ValueError("endpoint must be `global`, `eu`, or a URL starting with https://")
        return check_base_url(v)

    @field_validator("max_workers")
    @classmethod
    def _max_workers(cls, v: int | None, info: ValidationInfo) -> int:
        workers = info.data.get("workers")
        if not isinstance(workers, int):
            return v or 1  # workers has its own error; this one would only repeat it
        if v is None:
            return min(2 * workers, MAX_WORKERS)
        if v < workers:
            raise ValueError(
                f"max_workers ({v}) must be at least workers ({workers}): sending starts at "
                "`workers` requests at once and may grow up to max_workers; lower workers too"
            )
        return v

    @field_validator("min_workers")
    @classmethod
    def _min_workers(cls, v: int, info: ValidationInfo) -> int:
        workers = info.data.get("workers")
        if isinstance(workers, int) and v > workers:
            raise ValueError(
                f"min_workers ({v}) must be at most workers ({workers}): sending starts at "
                "`workers` requests at once and backs off no lower than min_workers"
            )
        return v

    @field_validator("connect_timeout", "read_timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        # At 0s every request fails locally and its rows would be marked unknown.
        if v < MIN_TIMEOUT:
            raise ValueError(
                f"must be at least {MIN_TIMEOUT.total_seconds() * 1000:.0f}ms; GA4 answers in "
                "well under a second, and the default (5s connect, 15s read) leaves room"
            )
        return v

    @field_validator("lease")
    @classmethod
    def _lease_outlasts_a_request(cls, v: timedelta, info: ValidationInfo) -> timedelta:
        connect, read = info.data.get("connect_timeout"), info.data.get("read_timeout")
        if not isinstance(connect, timedelta) or not isinstance(read, timedelta):
            return v  # their own errors are reported; this one would only repeat them
        if v <= connect + read:
            raise ValueError(
                f"lease ({_seconds(v)}) must be longer than connect_timeout + read_timeout "
                f"({_seconds(connect + read)}): a row whose lease ends while its request is "
                "still in flight can be claimed again and sent twice"
            )
        return v


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


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

    _path: Path | None = PrivateAttr(default=None)
    """Where the config was read from (set by `load_config`, never from the YAML: a `path:`
    key in the file is an unknown key like any other)."""
    _ca_problems: list[str] = PrivateAttr(default_factory=list)
    """Missing `ca_file`s (file:line: field: ...), found at load; raised by `check_ca_files`
    in commands that connect, so `status` and `outbox` still read the store meanwhile."""

    def check_ca_files(self) -> None:
        if self._ca_problems:
            raise ConfigError(self._ca_problems)

    @field_validator("connectors")
    @classmethod
    def _unique(cls, v: list[AnyConnectorSettings]) -> list[AnyConnectorSettings]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"connector names must be unique; repeated: {', '.join(dupes)}")
        return v

    @property
    def path(self) -> Path | None:
        return self._path

    @path.setter
    def path(self, value: Path | None) -> None:
        self._path = value

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
        raise ConfigError(
            format_validation_error(doc, exc, Config, kind_of_file="config")
        ) from None
    config.path = path.resolve()
    config._ca_problems = ca_file_problems(config, doc, config.resolve)
    _locate_secrets(config, (), doc)
    return config


def _locate_secrets(model: BaseModel, loc: Loc, doc: YamlDocument) -> None:
    """Tell each SecretRef its file:line, so errors found when it is read can point there.

    Those errors cannot show what was written (it may be the secret), so the line is all a
    person has to find it by.
    """
    fields = type(model).model_fields
    for name, value in model:
        here = (*loc, fields[name].alias or name)
        for index, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            item_loc = here if index is None else (*here, index)
            if isinstance(item, SecretRef):
                item.locate(f"{doc.where(item_loc)}, {dotted(item_loc)}")
            elif isinstance(item, BaseModel):
                _locate_secrets(item, item_loc, doc)
