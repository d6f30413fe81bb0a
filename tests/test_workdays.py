"""gateway/cases: official working days (chinese_calendar) and statutory clocks, on fixed dates.

The 2026 dates come from the State Council schedule as chinese_calendar 1.11 packages it:
Spring Festival Feb 15-23 with make-up Saturdays Feb 14 and Feb 28; Mid-Autumn Sep 25-27;
National Day Oct 1-7 with make-up days Sun Sep 20 and Sat Oct 10; Dragon Boat Jun 19-21.
"""

from __future__ import annotations

import datetime
import logging

import pytest

from gateway.cases.clocks import (
    BAD_REVIEW,
    DECISION,
    JOINT_DECISION,
    LICENCE_DELIVERY,
    SUPPLEMENT_NOTICE,
    ClockSpec,
    Deadline,
    Pause,
    deadline,
    decision_spec,
    is_overdue,
)
from gateway.cases.workdays import ChineseCalendarSource, Reckoning, WorkCalendar

D = datetime.date
LOGGER = "gateway.cases.workdays"


@pytest.fixture
def cal() -> WorkCalendar:
    return WorkCalendar()


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# ---------------------------------------------------------------- the official schedule


def test_default_source_reads_chinese_calendar(cal: WorkCalendar) -> None:
    source = ChineseCalendarSource()
    assert source.covers(D(2004, 1, 1))
    assert source.covers(D(2026, 12, 31))
    assert not source.covers(D(2003, 12, 31))
    assert not source.covers(D(2027, 1, 1))
    assert cal.covers(D(2026, 10, 1))
    assert not cal.covers(D(2027, 10, 1))


@pytest.mark.parametrize("day", [D(2026, 10, d) for d in range(1, 8)])
def test_national_day_2026_is_off(cal: WorkCalendar, day: datetime.date) -> None:
    assert not cal.is_workday(day)


@pytest.mark.parametrize("day", [
    D(2026, 9, 20),   # Sunday, make-up working day for National Day
    D(2026, 10, 10),  # Saturday, make-up working day for National Day
    D(2026, 2, 14),   # Saturday, make-up working day for Spring Festival
    D(2026, 2, 28),   # Saturday, make-up working day for Spring Festival
    D(2026, 1, 4),    # Sunday, make-up working day for New Year
    D(2026, 10, 8),   # Thursday right after the golden week: an ordinary working day
])
def test_make_up_days_are_working_days(cal: WorkCalendar, day: datetime.date) -> None:
    assert cal.is_workday(day)


def test_ordinary_weekend_is_off(cal: WorkCalendar) -> None:
    assert not cal.is_workday(D(2026, 10, 11))  # Sunday after the make-up Saturday
    assert not cal.is_workday(D(2026, 3, 7))
    assert cal.is_workday(D(2026, 3, 6))


def test_golden_week_is_skipped(cal: WorkCalendar) -> None:
    assert cal.add_workdays(D(2026, 9, 30), 1) == D(2026, 10, 8)
    assert cal.add_workdays(D(2026, 10, 3), 1) == D(2026, 10, 8)
    assert cal.workdays_between(D(2026, 9, 30), D(2026, 10, 8)) == 1
    assert cal.workdays_between(D(2026, 9, 30), D(2026, 10, 7)) == 0


def test_make_up_saturday_counts(cal: WorkCalendar) -> None:
    assert cal.add_workdays(D(2026, 10, 9), 1) == D(2026, 10, 10)
    assert cal.add_workdays(D(2026, 10, 9), 2) == D(2026, 10, 12)
    assert cal.workdays_between(D(2026, 10, 9), D(2026, 10, 11)) == 1


def test_spring_festival_2026(cal: WorkCalendar) -> None:
    assert cal.add_workdays(D(2026, 2, 13), 1) == D(2026, 2, 14)
    assert cal.add_workdays(D(2026, 2, 14), 1) == D(2026, 2, 24)
    # Feb 14, 24, 25, 26, 27 and the make-up Saturday Feb 28
    assert cal.workdays_between(D(2026, 2, 13), D(2026, 2, 28)) == 6


def test_start_day_not_counted(cal: WorkCalendar) -> None:
    assert cal.add_workdays(D(2026, 3, 2), 0) == D(2026, 3, 2)
    assert cal.add_workdays(D(2026, 3, 2), 1) == D(2026, 3, 3)
    assert cal.add_workdays(D(2026, 3, 6), 1) == D(2026, 3, 9)  # Friday -> Monday
    assert cal.workdays_between(D(2026, 3, 2), D(2026, 3, 2)) == 0


def test_workdays_between_is_inverse_of_add(cal: WorkCalendar) -> None:
    start = D(2026, 1, 1)
    for offset in range(0, 365, 3):
        s = start + datetime.timedelta(days=offset)
        for n in (0, 1, 5, 20, 45):
            due = cal.add_workdays(s, n)
            if due.year > 2026:
                continue
            assert cal.workdays_between(s, due) == n
            assert cal.workdays_between(due, s) == -n


def test_negative_n_refused(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        cal.add_workdays(D(2026, 3, 2), -1)


def test_datetime_is_reduced_to_date(cal: WorkCalendar) -> None:
    due = cal.add_workdays(datetime.datetime(2026, 9, 30, 23, 59), 1)
    assert due == D(2026, 10, 8)
    assert type(due) is datetime.date


# ---------------------------------------------------------------- beyond the schedule


def test_fallback_is_monday_to_friday_and_provisional(
        cal: WorkCalendar, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert cal.is_workday(D(2027, 1, 1))  # a Friday; really New Year's Day, hence provisional
    assert not cal.is_workday(D(2027, 1, 2))
    r = cal.reckon(D(2026, 12, 30), 3)
    assert r == Reckoning(day=D(2027, 1, 4), provisional=True)
    assert cal.is_provisional(D(2026, 12, 30), D(2027, 1, 4))
    assert cal.reckon(D(2026, 12, 28), 3) == Reckoning(day=D(2026, 12, 31), provisional=False)
    assert not cal.is_provisional(D(2026, 12, 28), D(2026, 12, 31))
    assert cal.is_provisional(D(2003, 12, 30), D(2004, 1, 2))


def test_one_warning_per_uncovered_year(
        cal: WorkCalendar, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(3):
        cal.add_workdays(D(2027, 3, 1), 40)
    cal.workdays_between(D(2027, 1, 1), D(2027, 12, 31))
    assert len(warnings_logged(caplog)) == 1
    assert "2027" in warnings_logged(caplog)[0].getMessage()
    cal.is_workday(D(2028, 6, 1))
    cal.is_workday(D(2028, 6, 2))
    assert len(warnings_logged(caplog)) == 2
    # covered years never warn
    cal.add_workdays(D(2026, 1, 1), 100)
    assert len(warnings_logged(caplog)) == 2


class FakeSource:
    """A published schedule for 2030 only: May 1-5 off, Sat Apr 27 worked."""

    def __init__(self) -> None:
        self.off = {D(2030, 5, d) for d in range(1, 6)}
        self.on = {D(2030, 4, 27)}

    def covers(self, day: datetime.date) -> bool:
        return day.year == 2030

    def is_workday(self, day: datetime.date) -> bool:
        assert self.covers(day), "asked about a day outside coverage"
        return day in self.on or (day.weekday() < 5 and day not in self.off)


def test_injected_holiday_source() -> None:
    cal = WorkCalendar(holiday_source=FakeSource())
    assert cal.covers(D(2030, 5, 1))
    assert not cal.covers(D(2026, 5, 1))
    assert cal.is_workday(D(2030, 4, 27))
    assert not cal.is_workday(D(2030, 5, 1))
    assert cal.add_workdays(D(2030, 4, 26), 1) == D(2030, 4, 27)
    assert cal.add_workdays(D(2030, 4, 30), 1) == D(2030, 5, 6)
    # 2026 is outside this source: Monday-Friday, even on real holidays
    assert cal.is_workday(D(2026, 10, 1))
    assert cal.reckon(D(2026, 9, 30), 1) == Reckoning(D(2026, 10, 1), provisional=True)


class NoWorkSource:
    def covers(self, day: datetime.date) -> bool:
        return True

    def is_workday(self, day: datetime.date) -> bool:
        return False


def test_broken_source_does_not_loop_forever() -> None:
    cal = WorkCalendar(holiday_source=NoWorkSource())
    with pytest.raises(RuntimeError, match="no working day"):
        cal.add_workdays(D(2026, 1, 1), 1)
    with pytest.raises(RuntimeError, match="no working day"):
        deadline(DECISION, D(2026, 1, 1), [], False, cal)


# ---------------------------------------------------------------- statutory clocks


def test_specs_follow_the_law() -> None:
    assert (SUPPLEMENT_NOTICE.workdays, SUPPLEMENT_NOTICE.extension) == (5, 0)
    assert (DECISION.workdays, DECISION.extension) == (20, 10)
    assert (JOINT_DECISION.workdays, JOINT_DECISION.extension) == (45, 15)
    assert (LICENCE_DELIVERY.workdays, BAD_REVIEW.workdays) == (10, 15)
    assert decision_spec() == DECISION
    assert decision_spec(7) == ClockSpec("decision", 7, 10)


def test_bad_specs_and_pauses_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        ClockSpec("decision", -1, 0)
    with pytest.raises(ValueError, match="kind"):
        ClockSpec("", 5, 0)
    with pytest.raises(ValueError, match="before it starts"):
        Pause(D(2026, 6, 5), D(2026, 6, 4))


def test_supplement_notice_over_national_day(cal: WorkCalendar) -> None:
    # received Wed Sep 30: Oct 8, 9, 10 (make-up Saturday), 12, 13
    d = deadline(SUPPLEMENT_NOTICE, D(2026, 9, 30), [], False, cal)
    assert d == Deadline(due=D(2026, 10, 13), provisional=False, paused=False)


def test_supplement_notice_cannot_be_extended(cal: WorkCalendar) -> None:
    with pytest.raises(ValueError, match="cannot be extended"):
        deadline(SUPPLEMENT_NOTICE, D(2026, 9, 30), [], True, cal)


def test_supplement_notice_over_spring_festival(cal: WorkCalendar) -> None:
    # received Thu Feb 12: Feb 13, 14 (make-up Saturday), then 24, 25, 26
    d = deadline(SUPPLEMENT_NOTICE, D(2026, 2, 12), [], False, cal)
    assert d.due == D(2026, 2, 26)


def test_decision_over_mid_autumn_and_national_day(cal: WorkCalendar) -> None:
    accepted = D(2026, 9, 21)
    assert deadline(DECISION, accepted, [], False, cal).due == D(2026, 10, 26)
    assert deadline(DECISION, accepted, [], True, cal).due == D(2026, 11, 9)


def test_joint_decision(cal: WorkCalendar) -> None:
    accepted = D(2026, 1, 5)
    assert deadline(JOINT_DECISION, accepted, [], False, cal).due == D(2026, 3, 13)
    assert deadline(JOINT_DECISION, accepted, [], True, cal).due == D(2026, 4, 3)


def test_item_specific_decision_limit(cal: WorkCalendar) -> None:
    assert deadline(decision_spec(3), D(2026, 9, 30), [], False, cal).due == D(2026, 10, 10)


JUNE = D(2026, 6, 1)  # Monday; 20 working days (Dragon Boat Fri Jun 19 off) end Tue Jun 30


def test_no_pause_baseline(cal: WorkCalendar) -> None:
    assert deadline(DECISION, JUNE, [], False, cal).due == D(2026, 6, 30)


def test_pause_over_a_weekend_pushes_by_paused_working_days(cal: WorkCalendar) -> None:
    # Fri Jun 5 to Mon Jun 8: two working days stand still, the weekend was off anyway
    d = deadline(DECISION, JUNE, [Pause(D(2026, 6, 5), D(2026, 6, 8))], False, cal)
    assert d == Deadline(due=D(2026, 7, 2), provisional=False, paused=False)


def test_pause_on_weekend_only_changes_nothing(cal: WorkCalendar) -> None:
    d = deadline(DECISION, JUNE, [Pause(D(2026, 6, 6), D(2026, 6, 7))], False, cal)
    assert d.due == D(2026, 6, 30)


def test_one_day_pause(cal: WorkCalendar) -> None:
    d = deadline(DECISION, JUNE, [Pause(D(2026, 6, 10), D(2026, 6, 10))], False, cal)
    assert d.due == D(2026, 7, 1)


def test_overlapping_pauses_count_once(cal: WorkCalendar) -> None:
    pauses = [Pause(D(2026, 6, 5), D(2026, 6, 8)), Pause(D(2026, 6, 8), D(2026, 6, 9))]
    assert deadline(DECISION, JUNE, pauses, False, cal).due == D(2026, 7, 3)


def test_pauses_outside_the_clock_change_nothing(cal: WorkCalendar) -> None:
    pauses = [Pause(D(2026, 5, 20), D(2026, 6, 1)), Pause(D(2026, 7, 1), D(2026, 7, 10))]
    assert deadline(DECISION, JUNE, pauses, False, cal).due == D(2026, 6, 30)


def test_pause_across_the_due_date(cal: WorkCalendar) -> None:
    # paused Jun 29 - Jul 3: the last two working days (29, 30) move after the pause
    d = deadline(DECISION, JUNE, [Pause(D(2026, 6, 29), D(2026, 7, 3))], False, cal)
    assert d.due == D(2026, 7, 7)


def test_open_pause_has_no_due_date(cal: WorkCalendar) -> None:
    d = deadline(DECISION, JUNE, [Pause(D(2026, 6, 10), None)], False, cal)
    assert d == Deadline(due=None, provisional=False, paused=True)
    assert not is_overdue(d, D(2030, 1, 1))


def test_open_pause_after_an_earlier_closed_one(cal: WorkCalendar) -> None:
    pauses = [Pause(D(2026, 6, 5), D(2026, 6, 8)), Pause(D(2026, 6, 20), None)]
    d = deadline(DECISION, JUNE, pauses, False, cal)
    assert d.due is None
    assert d.paused
    # once the procedure ends the clock resumes: 11 days counted before it (Jun 2-4, 9-12,
    # 15-18; Jun 19 is Dragon Boat), 9 after it (Jul 2, 3, 6-10, 13, 14)
    resumed = [pauses[0], Pause(D(2026, 6, 20), D(2026, 7, 1))]
    assert deadline(DECISION, JUNE, resumed, False, cal).due == D(2026, 7, 14)


def test_procedure_begun_after_the_limit_does_not_cure_it(cal: WorkCalendar) -> None:
    d = deadline(DECISION, JUNE, [Pause(D(2026, 7, 6), None)], False, cal)
    assert d == Deadline(due=D(2026, 6, 30), provisional=False, paused=True)
    assert is_overdue(d, D(2026, 7, 6))


def test_overdue(cal: WorkCalendar) -> None:
    d = deadline(DECISION, JUNE, [], False, cal)
    assert not is_overdue(d, D(2026, 6, 29))
    assert not is_overdue(d, D(2026, 6, 30))  # the due day itself is still in time
    assert is_overdue(d, D(2026, 7, 1))
    extended = deadline(DECISION, JUNE, [], True, cal)
    assert not is_overdue(extended, D(2026, 7, 1))


def test_clock_beyond_the_schedule_is_provisional(
        cal: WorkCalendar, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    # Dec 22-31 give 8 working days; 2027 is counted Monday-Friday (Jan 1 included, which the
    # real 2027 schedule will almost certainly make a holiday: hence provisional)
    d = deadline(DECISION, D(2026, 12, 21), [], False, cal)
    assert d == Deadline(due=D(2027, 1, 18), provisional=True, paused=False)
    assert is_overdue(d, D(2027, 1, 19))
    inside = deadline(DECISION, D(2026, 11, 2), [], False, cal)
    assert inside.due is not None
    assert inside.due.year == 2026
    assert not inside.provisional
    assert len(warnings_logged(caplog)) == 1


def test_pause_at_the_year_end(cal: WorkCalendar) -> None:
    # Dec 29, (Dec 30 paused), Dec 31, then 2027 counted Monday-Friday: Jan 1, 4, 5
    d = deadline(SUPPLEMENT_NOTICE, D(2026, 12, 28), [Pause(D(2026, 12, 30), D(2026, 12, 30))],
                 False, cal)
    assert d == Deadline(due=D(2027, 1, 5), provisional=True, paused=False)
    # the same pause earlier keeps the clock inside the schedule: Dec 23, 24, 25, 28, 29
    short = deadline(SUPPLEMENT_NOTICE, D(2026, 12, 21),
                     [Pause(D(2026, 12, 22), D(2026, 12, 22))], False, cal)
    assert short == Deadline(due=D(2026, 12, 29), provisional=False, paused=False)


def test_open_pause_reaching_beyond_the_schedule_is_not_provisional(cal: WorkCalendar) -> None:
    # No date was computed from guessed days: the clock stopped in 2026.
    d = deadline(DECISION, D(2026, 12, 1), [Pause(D(2026, 12, 10), None)], False, cal)
    assert d == Deadline(due=None, provisional=False, paused=True)
