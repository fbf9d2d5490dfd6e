"""`run`'s live progress on a terminal: capture pages and GA4 answers as they happen.

A cron job of 50,000 rows otherwise shows nothing for minutes, and a person cannot tell a slow
run from a stuck one. Shown only when stdout is a terminal (never in a pipe, a cron mail or a
`--format json` capture), drawn on stderr and cleared at the end, so the summary stays the
only output.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from ga4sync.cli.display import printable
from ga4sync.core.model import Status
from ga4sync.pipeline.engine import CaptureReport
from ga4sync.pipeline.ga4_client import SendOutcome
from ga4sync.state.store import ClaimedRow

if TYPE_CHECKING:  # rich.progress loads only when progress is drawn (a terminal)
    from rich.progress import Progress, TaskID


def wanted() -> bool:
    return sys.stdout.isatty()


class RunProgress:
    """Hooks for Engine.run_once; they do nothing when progress is not shown."""

    def __init__(self, *, show: bool) -> None:
        self._progress: Progress | None = None
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
        self._captures: dict[str, TaskID] = {}
        self._deliver: TaskID | None = None
        self._sent = 0
        self._other = 0

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_page(self, report: CaptureReport) -> None:
        if self._progress is None:
            return
        task = self._captures.get(report.connector)
        if task is None:
            label = f"capture {printable(report.connector)}"
            task = self._progress.add_task(label, total=None, counts="")
            self._captures[report.connector] = task
        self._progress.update(
            task,
            counts=f"new {report.captured}, already {report.duplicates}, "
            f"to send {report.pending}, skipped {sum(report.skipped.values())}",
        )

    def on_deliver(self) -> None:
        if self._progress is None:
            return
        # Delivery runs beside capture (a committed page is deliverable), so both show at once.
        self._deliver = self._progress.add_task("deliver to GA4", total=None, counts="")

    def on_outcome(self, _row: ClaimedRow, status: Status, _outcome: SendOutcome | None) -> None:
        if self._progress is None or self._deliver is None:
            return
        if status == Status.SENT:
            self._sent += 1
        else:
            self._other += 1
        self._progress.update(self._deliver, counts=f"sent {self._sent}, not sent {self._other}")
