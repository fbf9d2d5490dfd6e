"""The three kinds of error (STYLE.md #8): fatal at start, retriable transport, rejected record."""

from __future__ import annotations


class Ga4SyncError(Exception):
    """Base for errors a user sees; the message says what to fix."""


class ConfigError(Ga4SyncError):
    """Fatal at start: the config file or a secret is wrong."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class MappingError(Ga4SyncError):
    """Fatal for one connector: its mapping file is wrong. Each problem carries file:line:col."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConnectorError(Ga4SyncError):
    """The CRM refused or failed in a way a retry inside this run will not fix."""


class QuotaExhausted(ConnectorError):
    """The CRM's API quota ran out (or hit the configured floor); the run stops cleanly."""


class RetriableSendError(Ga4SyncError):
    """GA4 could not be reached or answered 5xx/429; the row is retried later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
