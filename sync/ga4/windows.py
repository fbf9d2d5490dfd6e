"""GA4's time windows for a sent event (ga4-mp.md, "Time windows"): pure, no I/O.

A conversion sent within 24 h of the CRM change can still join the visitor's web session (for
source/medium/campaign attribution) when it carries a session id; within 72 h GA4 backdates it
to when it happened; older than that GA4 clamps or refuses it, so ga4sync only sends it when a
run asked for `--old-events=clamp`. Status, the report and `/metrics` all class sent events with
this one function so their figures agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ga4sync.core.clock import ensure_utc
from ga4sync.ga4.limits import BACKDATE_WINDOW

SESSION_JOIN_WINDOW = timedelta(hours=24)
"""A hit joins the web session only within 24 h of the session start (with `session_id`)."""


class Ga4Window(StrEnum):
    """Which window an event was in when GA4 got it. Values are stable metric/report labels."""

    WITHIN_24H = "within_24h"
    WITHIN_72H = "within_72h"
    TOO_OLD = "too_old"


WINDOW_ORDER: tuple[Ga4Window, ...] = (
    Ga4Window.WITHIN_24H,
    Ga4Window.WITHIN_72H,
    Ga4Window.TOO_OLD,
)
"""Display order: freshest first."""


@dataclass(frozen=True)
class WindowClass:
    """A sent event's window, and whether it could join the web session."""

    window: Ga4Window
    session_joinable: bool
    """Within 24 h AND a session id was sent: GA4 can attribute it to the visit."""


def classify_window(changed_at: datetime, sent_at: datetime) -> Ga4Window:
    """Class by the age of the CRM change when it was sent (sent_at - changed_at).

    Args:
        changed_at: when the CRM recorded the stage change (naive means UTC).
        sent_at: when GA4 answered 2xx for it.

    Returns:
        `within_24h` up to and including 24 h, `within_72h` up to and including 72 h, else
        `too_old` (sent with a clamped timestamp). A negative age (clock skew between the CRM
        and us) counts as fresh.
    """
    age = ensure_utc(sent_at) - ensure_utc(changed_at)
    if age <= SESSION_JOIN_WINDOW:
        return Ga4Window.WITHIN_24H
    if age <= BACKDATE_WINDOW:
        return Ga4Window.WITHIN_72H
    return Ga4Window.TOO_OLD


def classify_sent_event(
    changed_at: datetime, sent_at: datetime, *, session_id: str | None
) -> WindowClass:
    """The window plus whether the event could join its web session (needs a session id)."""
    window = classify_window(changed_at, sent_at)
    joinable = window is Ga4Window.WITHIN_24H and bool(session_id and str(session_id).strip())
    return WindowClass(window=window, session_joinable=joinable)
