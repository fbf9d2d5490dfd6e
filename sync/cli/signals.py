"""A graceful stop for the one-shot commands (`run`, `backfill`), like the daemon's.

SIGTERM is what cron timeouts, `systemctl stop` and Kubernetes send; Python's default handler
ends the process on the spot, so a batch already sent to GA4 was never settled and its rows
turned `unknown` for a person to check. Setting the engine's stop event instead lets capture
stop after the page it is committing and delivery after the requests in flight.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import click

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: threading.Event) -> dict[signal.Signals, Any]:
    """First SIGTERM/SIGINT: finish the step in flight and commit. Second: stop at once."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(
            f"{signal.Signals(signum).name}: stopping after the page / GA4 batch in flight "
            "(again to abort)",
            err=True,
        )

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def interrupt_on_signals() -> dict[signal.Signals, Any]:
    """SIGTERM/SIGINT raise KeyboardInterrupt: for steps that write nothing (a dry run), so
    stopping at once is safe, and the caller can exit 130 as an interrupted backfill does
    (SIGTERM's default ended the process with -15, Ctrl-C left click's bare `Aborted!`)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def restore_signals(previous: dict[signal.Signals, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
