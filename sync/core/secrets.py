"""Secrets come from env vars or files and are scrubbed from anything a person can read.

GA4 puts `api_secret` in the query string, so every URL that reaches a log line, an exception
or the state store goes through `redact` (STYLE.md #10: dlt's default list misses api_secret).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from ga4sync.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

_SENSITIVE_QUERY = re.compile(
    r"(?i)((?:api_secret|access_token|client_secret|session_id|sessionid|token|password"
    r"|security_token|assertion|secret)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=!-]+")

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so `redact` removes it wherever it shows up."""
    if value and len(value) >= 4:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    text = _SENSITIVE_QUERY.sub(r"\1***", text)
    text = _BEARER.sub(r"\1***", text)
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """Applied at every level, so DEBUG request logs of urllib3/requests are scrubbed too."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not drop the log line
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class SecretRef(BaseModel):
    """Where a secret lives: `env: NAME` or `file: path`. The value itself never sits in config."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if bool(self.env) == bool(self.file):
            raise ValueError("give exactly one of `env:` (an environment variable) or `file:`")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self, base_dir: Path | None = None) -> SecretStr:
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"secret not found: environment variable {self.env} is not set")
        else:
            assert self.file is not None
            path = Path(os.path.expanduser(self.file))
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"secret file {path} cannot be read: {exc.strerror}") from None
            if not value:
                raise ConfigError(f"secret file {path} is empty")
        register_secret(value)
        return SecretStr(value)
