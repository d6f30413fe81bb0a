"""A small in-process limit on guessing query passwords (查询密码).

A query password is 8 digits, printed on a paper receipt, so it must be cheap to type; what
keeps it from being guessed is that each case allows only a few wrong tries per window, and that
each try costs a scrypt check. Counted per process: with several processes the limit is per
process, which still bounds guessing to a few tries a minute per case.
"""

from __future__ import annotations

from collections import OrderedDict

from trust.clock import Clock
from trust.errors import ErrorCode, TongbanError


class RateLimited(TongbanError):
    code = ErrorCode.RATE_LIMITED


class FailureLimiter:
    def __init__(self, clock: Clock, *, tries: int = 5, window: float = 900.0,
                 max_keys: int = 100_000) -> None:
        self._clock = clock
        self._tries = tries
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, key: str) -> list[float]:
        cutoff = self._clock() - self._window
        recent = [t for t in self._failures.get(key, []) if t > cutoff]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def check(self, key: str) -> None:
        if len(self._recent(key)) >= self._tries:
            raise RateLimited(f"too many wrong query passwords for this case; try again in "
                              f"{int(self._window // 60)} minutes")

    def failed(self, key: str) -> None:
        self._failures.setdefault(key, []).append(self._clock())
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
