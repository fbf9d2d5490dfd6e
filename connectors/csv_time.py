"""Times in offline-conversion files -> UTC, with the time zone stated, never guessed.

POS and call-tracking exports mostly write local wall-clock times without an offset. A wrong
guess shifts every conversion by hours (and across GA4's 24 h / 72 h windows), so a naive time
needs `csv.timezone` in the mapping, and a wall-clock time that does not exist (clocks jump
forward) or exists twice (clocks fall back) in that zone is refused for that row rather than
resolved silently: the export should carry an offset for that hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ga4sync.core.errors import ConfigError


class TimeValueError(ValueError):
    """One cell's time cannot be turned into UTC; the message says why and what to change."""


def load_timezone(name: str | None, *, where: str) -> tzinfo | None:
    """The mapping's `csv.timezone` as a tzinfo, or a ConfigError naming the mapping file.

    Raises:
        ConfigError: the name is not an IANA time zone (e.g. `CET+1`, `Berlin`).
    """
    if name is None:
        return None
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: csv.timezone `{name}` is not an IANA time zone; write it like "
            "Europe/Berlin, America/New_York or UTC"
        ) from None


@dataclass(frozen=True)
class TimeParser:
    """Parses one column's cells: the format and zone come from the mapping's `csv:` block."""

    column: str
    time_format: str | None
    zone: tzinfo | None
    zone_name: str | None

    def parse(self, text: str) -> datetime:
        """One cell -> an aware UTC datetime.

        Raises:
            TimeValueError: unparsable, naive without a zone, or not a unique local time.
        """
        value = text.strip()
        try:
            if self.time_format:
                parsed = datetime.strptime(value, self.time_format)
            else:
                parsed = datetime.fromisoformat(value)
        except ValueError:
            expected = (
                f"the format `{self.time_format}`"
                if self.time_format
                else "ISO 8601 like 2026-03-01 14:30 or 2026-03-01T14:30:00+01:00 "
                "(or set csv.time_format)"
            )
            raise TimeValueError(
                f"column {self.column} holds {value[:40]!r}, not a time in {expected}"
            ) from None
        try:
            return self._to_utc(parsed, value)
        except OverflowError:
            raise TimeValueError(
                f"column {self.column} holds {value[:40]!r}, a time too close to year 1 or "
                "9999 to place in UTC; check the export"
            ) from None

    def _to_utc(self, parsed: datetime, value: str) -> datetime:
        if parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
        if self.zone is None:
            raise TimeValueError(
                f"column {self.column} holds {value!r} without a UTC offset and the mapping "
                "sets no csv.timezone; set csv.timezone (e.g. Europe/Berlin) or export times "
                "with an offset"
            )
        return self._localize(parsed, value)

    def _localize(self, wall: datetime, shown: str) -> datetime:
        early = wall.replace(tzinfo=self.zone, fold=0)
        late = wall.replace(tzinfo=self.zone, fold=1)
        back = early.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None)
        if back != wall:
            raise TimeValueError(
                f"column {self.column} holds {shown!r}, a time that does not exist in "
                f"{self.zone_name} (the clocks jumped forward that night); export it with "
                "a UTC offset"
            )
        if early.utcoffset() != late.utcoffset():
            raise TimeValueError(
                f"column {self.column} holds {shown!r}, a time that happened twice in "
                f"{self.zone_name} (the clocks went back that night); export it with a UTC "
                "offset so ga4sync need not guess which"
            )
        return early.astimezone(UTC)


FUTURE_HINT_AFTER = timedelta(minutes=30)
"""How far ahead of now a CSV time must be to be refused at capture with a time-zone hint:
further than any clock skew or the minute GA4 tolerates, so it cannot become valid before it
is sent (GA4 would refuse it as "in the future" at delivery, without saying why)."""


def future_time_reason(
    changed_at: datetime, now: datetime, zone_name: str | None, mapping: str
) -> str | None:
    """Why a CSV row timed well ahead of now is not sent: nearly always `csv.timezone` (or an
    export that switched zones), so say that, with the offset a person can compare to theirs."""
    ahead = changed_at - now
    if ahead < FUTURE_HINT_AFTER:
        return None
    minutes = round(ahead.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    shown = f"{hours} h {rest} min" if rest else f"{hours} h"
    zone = f"csv.timezone is {zone_name}" if zone_name else "the time has an offset"
    return (
        f"timestamp_future: the CSV time is {shown} ahead of now ({changed_at:%Y-%m-%d %H:%M} "
        f"UTC) and GA4 refuses times in the future; {zone} in {mapping}: is that the zone the "
        "export writes its times in (a whole number of hours off usually means the wrong "
        "csv.timezone, or times exported in UTC or another zone)?"
    )
