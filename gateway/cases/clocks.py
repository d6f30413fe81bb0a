"""Statutory deadline clocks for a case, as 行政许可法 sets them.

- Article 32: an incomplete application gets one notice listing everything to supplement, on
  the spot or within 5 days of receipt; a notice not given in time means the application counts
  as accepted from the day the materials were received. Hence a 5-day clock from receipt with
  no extension, and a case whose notice clock runs out must start its decision clock at receipt.
- Article 42: the decision is due within 20 days of acceptance, extendable once by 10 with the
  approval of the authority's head, the reason told to the applicant; other laws or regulations
  may set another limit, so the limit is item-specific. Unified, joint or centralised handling
  (article 26, our joint mode) gets 45 days, extendable by 15.
- Article 44: the licence is issued and delivered within 10 days of the decision.
- Article 45: time needed for hearings, tendering, auctions, inspection, testing, quarantine,
  appraisal and expert review (特别程序) is not counted. Hence pauses.
- Article 82: these limits are working days, without statutory holidays (see `workdays`).

Everything here is a pure function of its arguments: the same case history gives the same
deadline on every gateway, which is what both sides of a cross-province case must agree on.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.cases.workdays import MAX_GAP_DAYS, ONE_DAY, WorkCalendar


@dataclass(frozen=True)
class ClockSpec:
    """A kind of time limit: `workdays` to act, `extension` more if the authority extends it
    (0 where the law allows no extension)."""

    kind: str
    workdays: int
    extension: int

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("a clock needs a kind")
        if self.workdays < 0 or self.extension < 0:
            raise ValueError("working days and extension must be >= 0")


# Article 32: the supplement notice (补正告知), counted from receipt.
SUPPLEMENT_NOTICE = ClockSpec("supplement-notice", 5, 0)
# Article 42(1): the default decision limit, counted from acceptance.
DECISION = ClockSpec("decision", 20, 10)
# Article 42(2): unified, joint or centralised handling (多地联办).
JOINT_DECISION = ClockSpec("joint-decision", 45, 15)
# Article 44: issuing and delivering the licence after the decision.
LICENCE_DELIVERY = ClockSpec("licence-delivery", 10, 0)
# 好差评 (国办发〔2019〕51号): a bad review is fixed and answered within 15 working days.
BAD_REVIEW = ClockSpec("bad-review-rectification", 15, 0)


def decision_spec(workdays: int = DECISION.workdays) -> ClockSpec:
    """The decision clock of an item whose law or published promise sets its own limit
    (article 42: "法律、法规另有规定的，依照其规定"); the extension stays article 42's 10 days."""
    return ClockSpec(DECISION.kind, workdays, DECISION.extension)


@dataclass(frozen=True)
class Pause:
    """A special procedure (article 45): the clock stands still from `start` to `end`, both
    days included, since the procedure takes up each of them. `end` is None while it is
    still under way."""

    start: datetime.date
    end: datetime.date | None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError("a pause cannot end before it starts")

    def holds(self, day: datetime.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Deadline:
    """`due` is the last day on which acting is in time.

    `due` is None when the clock stopped for a special procedure still under way before it ran
    out: article 45 excludes the procedure's time, and nobody knows yet how long it will take.
    We do not compute "as if resumed today": that date would move every day while looking firm,
    and would mark nothing overdue that is not. `paused` says a procedure is under way; if the
    clock had already run out before that procedure began, `due` is kept (a hearing started
    late does not cure a missed limit).
    `provisional` means some day counted lies beyond the official holiday schedule.
    """

    due: datetime.date | None
    provisional: bool
    paused: bool


def deadline(spec: ClockSpec, started: datetime.date, pauses: Sequence[Pause], extended: bool,
             calendar: WorkCalendar) -> Deadline:
    """The deadline of a clock that started on `started` (receipt or acceptance, not counted).

    The clock walks forward one day at a time, skipping paused days and counting working days,
    so paused working days push the due date back by exactly their number, overlapping pauses
    count once, and a pause that begins only after the limit ran out changes nothing.
    """
    if extended and spec.extension == 0:
        raise ValueError(f"a {spec.kind} clock cannot be extended")
    budget = spec.workdays + (spec.extension if extended else 0)
    under_way = any(p.end is None for p in pauses)
    day, counted, provisional, gap = started, 0, False, 0
    while counted < budget:
        day += ONE_DAY
        holding = [p for p in pauses if p.holds(day)]
        if any(p.end is None for p in holding):
            return Deadline(due=None, provisional=provisional, paused=True)
        if holding:
            continue
        if not calendar.covers(day):
            provisional = True
        if calendar.is_workday(day):
            counted += 1
            gap = 0
        else:
            gap += 1
            if gap > MAX_GAP_DAYS:
                raise RuntimeError(f"calendar reports no working day after {day}")
    return Deadline(due=day, provisional=provisional, paused=under_way)


def is_overdue(deadline: Deadline, today: datetime.date) -> bool:
    """Overdue once the due day has passed; never while the clock stands still with no date,
    since article 45 does not count the special procedure against the authority."""
    return deadline.due is not None and today > deadline.due
