"""A clock is injected wherever time decides validity, so tests move time without patching."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds since the epoch, as `time.time()`."""
        ...


def system_clock() -> float:
    return time.time()


class FakeClock:
    """Manually advanced clock for tests and simulations."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
