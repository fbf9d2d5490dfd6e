"""Secrets come from env vars or files and are scrubbed from anything a person can read.

GA4 puts `api_secret` in the query string, so every URL that reaches a log line, an exception
or the state store goes through `redact` (STYLE.md #10: dlt's default list misses api_secret).

A secret field in the config holds only *where* the secret lives. People paste the secret itself
there (or where a variable name or file path belongs), so no message about a secret field ever
repeats what was written: it says which line and what shape is expected instead. Errors go to
terminals, logs and `runs.error`, which are all far less protected than the secret was.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from ga4sync.core.errors import ConfigError
from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr, model_validator

_SENSITIVE_QUERY = re.compile(
    r"(?i)((?:api_secret|access_token|client_secret|session_id|sessionid|token|password"
    r"|security_token|assertion|secret)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=!-]+")

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret so `redact` removes it wherever it shows up.

    The escaped forms are remembered too: a secret in a URL is percent-encoded, in a JSON log
    line or a repr() in a traceback its quotes and backslashes are escaped, and a plain
    substring match would miss each of those.
    """
    if not value or len(value) < 4:
        return
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
    }
    with _known_lock:
        _known.update(form for form in forms if len(form) >= 4)


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


SECRET_FILE_MAX_BYTES = 16 * 1024
"""A secret file holds one token or one PEM key (an 8192-bit RSA key is about 6.5 KB).

Anything bigger is the wrong file; reading it whole could take the daemon's memory with it
(`file: /dev/zero`)."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CONVENTIONAL_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*_[A-Z0-9_]*")
"""Upper case with an underscore (GA4SYNC_API_SECRET): the only names an error repeats.

A name that does not look like this may be the secret itself, typed where the name belongs."""

_SHAPE = "write `env: NAME` (an environment variable that holds the secret) or `file: path`"
_NOT_SHOWN = "it is not shown here because it may be the secret itself"


def _what_was_written(value: object) -> str:
    """Say what kind of value is there without a single character of it."""
    if value is None or value == "":
        return "nothing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool | int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "something else"


class SecretRef(BaseModel):
    """Where a secret lives: `env: NAME` or `file: path`. The value itself never sits in config."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: str | None = None
    _where: str = PrivateAttr(default="")
    """`ga4sync.yaml:4:5 (ga4.api_secret)` once the config has located it; errors cite it."""

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        """Check the whole shape here, so no pydantic error (which quotes input) can fire."""
        if isinstance(data, SecretRef):
            return data
        if not isinstance(data, dict):
            raise ValueError(
                f"expected where the secret lives, got {_what_was_written(data)}; {_SHAPE}. "
                "What is written here is not shown: if it is the secret itself, move it out of "
                "this file and treat it as exposed"
            )
        if set(data) - {"env", "file"}:
            raise ValueError(f"this block may only hold `env:` or `file:`; {_SHAPE}")
        given = {key: value for key, value in data.items() if value not in (None, "")}
        if len(given) != 1:
            raise ValueError(f"give exactly one of `env:` or `file:`; {_SHAPE}")
        ((key, value),) = given.items()
        if not isinstance(value, str):
            raise ValueError(f"`{key}:` takes text, got {_what_was_written(value)}; {_SHAPE}")
        if key == "env" and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "`env:` takes the name of an environment variable (letters, digits and _, e.g. "
                f"GA4SYNC_API_SECRET) and this is not one; {_NOT_SHOWN}. Put the secret in an "
                "environment variable and write that variable's name here"
            )
        return {key: value}

    def locate(self, where: str) -> None:
        """Remember where the config wrote this reference, for errors that cannot show it."""
        self._where = where

    def describe(self) -> str:
        """Where the secret lives, in words safe to print anywhere."""
        at = f" named at {self._where}" if self._where else " named in the config"
        if self.env:
            if _CONVENTIONAL_ENV_NAME.fullmatch(self.env):
                return f"environment variable {self.env}" + (
                    f" ({self._where})" if self._where else ""
                )
            return "the environment variable" + at
        return "the secret file" + at

    def resolve(self, base_dir: Path | None = None) -> SecretStr:
        if self.env:
            # Stripped like a secret file: a trailing newline (a Kubernetes secret, an .env
            # file) is never part of a secret, and GA4 silently drops events sent with it.
            value = (os.environ.get(self.env) or "").strip()
            if not value:
                raise ConfigError(
                    f"secret not found: {self.describe()} is not set (or holds only spaces)"
                )
        else:
            assert self.file is not None
            path = Path(os.path.expanduser(self.file))
            relative_to = None
            if not path.is_absolute() and base_dir is not None:
                path, relative_to = base_dir / path, base_dir
            value = self._read_file(path, relative_to)
        register_secret(value)
        return SecretStr(value)

    def _read_file(self, path: Path, relative_to: Path | None) -> str:
        """Read a regular file of at most SECRET_FILE_MAX_BYTES, without blocking on a pipe.

        Each error names the file and where the config points at it, the line to fix when
        the config names the wrong file."""
        at = f" (named at {self._where})" if self._where else ""
        try:
            # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            if not os.path.lexists(path):
                # A path that names nothing may be the secret itself, typed in the wrong place.
                folder = f" (relative to {relative_to})" if relative_to else ""
                raise ConfigError(
                    f"secret not found: {self.describe()} does not exist{folder}; the path is "
                    "not shown because it may be the secret itself"
                ) from None
            raise ConfigError(f"secret file {path} cannot be read: {exc.strerror}{at}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise ConfigError(
                    f"secret file {path} is {_file_kind(mode)}, not a regular file; name a "
                    f"file that holds only the secret{at}"
                )
            data = os.read(fd, SECRET_FILE_MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > SECRET_FILE_MAX_BYTES:
            raise ConfigError(
                f"secret file {path} is bigger than {SECRET_FILE_MAX_BYTES // 1024} KB, the "
                f"most a secret file may hold; name a file that holds only the secret{at}"
            )
        try:
            value = data.decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            raise ConfigError(
                f"secret file {path} is not UTF-8 text; save only the secret in it, as text{at}"
            ) from None
        if not value:
            raise ConfigError(f"secret file {path} is empty{at}")
        return value


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
