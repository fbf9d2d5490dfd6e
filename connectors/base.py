"""The connector contract (STYLE.md #6): the engine owns the loop, state and transactions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol

from ga4sync.connectors.catalog import CrmFields, StageVocabulary
from ga4sync.core.durations import Duration
from ga4sync.core.model import TimeWindow, TransitionPage
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ConnectorSettings(BaseModel):
    """Settings every connector shares; each connector module subclasses it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Unique name of this connector."
    )
    type: str
    mapping: str = Field(description="Path of the mapping file, relative to the config file.")
    every: Duration | None = Field(default=None, description="Daemon interval, e.g. 5m.")
    cron: str | None = Field(default=None, description="Daemon cron expression instead of every.")
    overlap: Duration = Field(
        default=timedelta(minutes=10),
        description="How far behind the watermark each poll re-reads (CRM indexes lag).",
    )
    initial_lookback: Duration = Field(
        default=timedelta(hours=72),
        description="Where the first run starts when there is no watermark yet.",
    )
    enabled: bool = True

    @field_validator("every")
    @classmethod
    def _positive_every(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("must be longer than 0s, e.g. 5m")
        return value

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str | None) -> str | None:
        # Checked when the config loads, so the error names the line, not when the daemon starts.
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(
                    f"`{value}` is not a 5-field crontab (minute hour day month weekday, e.g. "
                    f"*/15 * * * *): {exc}"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> ConnectorSettings:
        if self.every is not None and self.cron is not None:
            raise ValueError("set either `every` (e.g. 5m) or `cron` (e.g. */15 * * * *), not both")
        return self


@dataclass
class ApiUsage:
    """CRM API calls made by one run, and the quota the CRM reported, for status and metrics."""

    calls: int = 0
    used: int | None = None
    limit: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def remaining(self) -> int | None:
        if self.used is None or self.limit is None:
            return None
        return self.limit - self.used


class Connector(Protocol):
    """Everything the pipeline asks of a CRM or a file source, and nothing else.

    A connector reads what its `FetchSpec` names; it never touches the state store, the
    mapping file or GA4. Problems that did not stop the read go to `warnings`; the refusals
    the mapping can fix are raised as `connectors.errors` types naming the field or object.
    """

    name: str
    object_type: str
    usage: ApiUsage
    detection: Literal["history", "snapshot", "file"]
    warnings: list[str]
    """Problems that did not stop the read (snapshot mode, an empty file, ...)."""

    def fetch_transitions(self, window: TimeWindow) -> Iterator[TransitionPage]:
        """Yield pages in ascending change time; each page's watermark is safe to resume from."""
        ...

    def stage_vocabulary(self) -> StageVocabulary | None:
        """The stage field's values with their ids and labels, or None when the source has no
        list (labels are then compared as written)."""
        ...

    def field_catalog(self) -> CrmFields | None:
        """The object's fields as the CRM lists them, or None when the source cannot list them."""
        ...

    def setup_warnings(self) -> list[str]:
        """What in the CRM's setup would make a run succeed while seeing less than it should
        (a stage field whose history is not tracked): `mappings validate` says it up front."""
        ...

    def close(self) -> None: ...
