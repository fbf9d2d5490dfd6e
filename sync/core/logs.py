"""Logging: human or JSON lines, and every handler scrubs secrets at every level.

Tracebacks go through the same scrubbing: an exception's text (a URL with the secret in its
query string, a repr of request arguments) is where a secret is most likely to surface. Errors
nobody caught, in the main thread or any other, are logged here too rather than printed raw by
Python's default hooks.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType

from ga4sync.core.secrets import RedactingFilter, redact

log = logging.getLogger("ga4sync")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Each field is scrubbed before json.dumps: JSON escaping (a quote or backslash in a
        # secret) would otherwise hide the secret from a search over the finished line.
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in ("connector", "event", "key", "run"):
            if hasattr(record, key):
                value = getattr(record, key)
                data[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            data["exc"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(data, default=str))


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RetryWarningsAtDebug(logging.Filter):
    """urllib3's `Retrying (Retry(total=2, ...)) after connection broken by ...` warnings,
    logged as DEBUG: they came three at a time before our own error, which already names the
    address and the reason; `--log-level debug` still shows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.getMessage().startswith("Retrying"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure_logging(level: str = "WARNING", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    retries = logging.getLogger("urllib3.connectionpool")
    for earlier in [f for f in retries.filters if isinstance(f, RetryWarningsAtDebug)]:
        retries.removeFilter(earlier)
    retries.addFilter(RetryWarningsAtDebug())
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    log.critical(
        "unexpected %s: %s", kind.__name__, redact(str(error)), exc_info=(kind, error, trace)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    thread = args.thread.name if args.thread else "a thread"
    log.error(
        "unexpected %s in %s: %s",
        args.exc_type.__name__,
        thread,
        redact(str(args.exc_value)),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
