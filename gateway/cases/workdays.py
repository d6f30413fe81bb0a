"""Official working days: the unit every statutory time limit is counted in.

行政许可法 article 82 counts the limits in working days, excluding statutory holidays, and the
State Council moves working days around holidays every year (调休: a Saturday or Sunday becomes
a working day so a holiday can be longer). Neither follows a rule, so the days come from the
published schedule as packaged by `chinese_calendar`, never from a list typed in here.

That package only knows the years whose schedule has been published (up to 2026 in 1.11; the
State Council publishes the next year's around November). Beyond its range a deadline still has
to be shown, so we fall back to Monday-Friday, but mark the result `provisional`: a gateway that
silently guesses would tell an applicant a wrong date as if it were certain. One warning per
uncovered year is logged, so an operator notices the package needs updating without the log
filling up on every deadline computed.

Counting follows 民法典 article 201: the day an event happens is not counted; the period starts
on the next day. So `add_workdays(start, n)` is the n-th working day after `start`, and the
limit ends at the end of that day.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import chinese_calendar

log = logging.getLogger(__name__)

ONE_DAY = datetime.timedelta(days=1)
# A source that reports no working day for this long is broken; stop rather than loop forever.
MAX_GAP_DAYS = 366


class HolidaySource(Protocol):
    """Where the official schedule comes from; tests inject their own."""

    def is_workday(self, day: datetime.date) -> bool:
        """Whether `day` is a working day; only asked for days that `covers` accepts."""
        ...

    def covers(self, day: datetime.date) -> bool:
        """Whether the published schedule for `day` is known."""
        ...


class ChineseCalendarSource:
    """The State Council schedule as packaged by `chinese_calendar`.

    Coverage is probed per year through the package's own NotImplementedError rather than
    read from its internal tables, so a newer release that adds years just works.
    """

    def __init__(self) -> None:
        self._covered: dict[int, bool] = {}
        # The package's tables never change in a process; its lookup validates and converts
        # the date each time, and every case that arrives counts five working days ahead.
        self._days: dict[datetime.date, bool] = {}

    def covers(self, day: datetime.date) -> bool:
        year = day.year
        if year not in self._covered:
            try:
                chinese_calendar.is_workday(datetime.date(year, 1, 1))
                chinese_calendar.is_workday(datetime.date(year, 12, 31))
            except NotImplementedError:
                self._covered[year] = False
            else:
                self._covered[year] = True
        return self._covered[year]

    def is_workday(self, day: datetime.date) -> bool:
        known = self._days.get(day)
        if known is None:
            known = self._days[day] = bool(chinese_calendar.is_workday(day))
        return known


@dataclass(frozen=True)
class Reckoning:
    """A date computed in working days, and whether any day it depends on was guessed."""

    day: datetime.date
    provisional: bool


class WorkCalendar:
    """Working days from an official `holiday_source`, Monday-Friday where it has no data.

    `covers` and `is_provisional` let callers say when a date rests on the fallback; the plain
    `add_workdays`/`workdays_between` keep the simple signatures for code that only needs dates.
    """

    def __init__(self, holiday_source: HolidaySource | None = None) -> None:
        self._source: HolidaySource = (
            ChineseCalendarSource() if holiday_source is None else holiday_source)
        self._warned: set[int] = set()
        self._lock = threading.Lock()

    def covers(self, day: datetime.date) -> bool:
        return self._source.covers(_as_date(day))

    def is_workday(self, day: datetime.date) -> bool:
        day = _as_date(day)
        if self._source.covers(day):
            return self._source.is_workday(day)
        self._warn_uncovered(day.year)
        return day.weekday() < 5

    def is_provisional(self, first: datetime.date, last: datetime.date) -> bool:
        """Whether any day from `first` to `last` (inclusive, either order) lies outside
        the official schedule, i.e. whether a count over that span used the fallback."""
        first, last = sorted((_as_date(first), _as_date(last)))
        day = first
        while day <= last:
            if not self._source.covers(day):
                return True
            day += ONE_DAY
        return False

    def reckon(self, start: datetime.date, n: int) -> Reckoning:
        """The n-th working day after `start`, flagged provisional if any day counted or
        skipped on the way was outside the official schedule."""
        start = _as_date(start)
        if n < 0:
            raise ValueError("n must be >= 0; deadlines only run forward")
        day, counted, provisional, gap = start, 0, False, 0
        while counted < n:
            day += ONE_DAY
            if not self._source.covers(day):
                provisional = True
            if self.is_workday(day):
                counted += 1
                gap = 0
            else:
                gap += 1
                if gap > MAX_GAP_DAYS:
                    raise RuntimeError(f"holiday source reports no working day after {day}")
        return Reckoning(day=day, provisional=provisional)

    def add_workdays(self, start: datetime.date, n: int) -> datetime.date:
        """The date n working days after `start`; `start` itself is not counted (n=0: start)."""
        return self.reckon(start, n).day

    def workdays_between(self, a: datetime.date, b: datetime.date) -> int:
        """Working days d with a < d <= b: the inverse of `add_workdays`, so
        `workdays_between(s, add_workdays(s, n)) == n`. Negative when b is before a."""
        a, b = _as_date(a), _as_date(b)
        if b < a:
            return -self.workdays_between(b, a)
        count, day = 0, a
        while day < b:
            day += ONE_DAY
            if self.is_workday(day):
                count += 1
        return count

    def _warn_uncovered(self, year: int) -> None:
        with self._lock:
            if year in self._warned:
                return
            self._warned.add(year)
        log.warning("no official holiday schedule for %d: counting Monday-Friday, deadlines "
                    "in %d are provisional (update chinese-calendar once the State Council "
                    "publishes it)", year, year)


def _as_date(day: datetime.date) -> datetime.date:
    """A datetime is a date subclass; keep only its date so arithmetic stays in whole days."""
    if isinstance(day, datetime.datetime):
        return day.date()
    return day
