"""Committed capture pages, as the delivery running beside the capture sees them.

A first sync or a backfill can read tens of thousands of transitions page by page; each page is
committed to the outbox before the next is read, and a committed row is deliverable. Delivery
runs beside the capture and claims again whenever a page was committed, instead of waiting for
the whole capture: the first event leaves while the CRM is still being paged.

Nothing here decides what is sent: claiming from the outbox does, exactly as without the feed
(a row is claimed once, under its lease). The feed only says when claiming again can find
something new, and when nothing more will come.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class FeedState:
    pages: int
    """Pages committed so far (any connector): a change means new rows may be due."""
    finished: bool
    """The capture is over: an empty claim now means there is nothing left to send."""


class CaptureFeed:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pages = 0
        self._finished = False

    def page_committed(self) -> None:
        with self._changed:
            self._pages += 1
            self._changed.notify_all()

    def finish(self) -> None:
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def state(self) -> FeedState:
        with self._changed:
            return FeedState(self._pages, self._finished)

    def wait_past(self, seen: FeedState, timeout: float) -> None:
        """Until a page after `seen` is committed or the capture finishes (or `timeout`)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._pages != seen.pages or self._finished != seen.finished, timeout
            )
