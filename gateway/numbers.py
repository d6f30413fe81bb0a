"""Whole numbers typed by people or sent in URLs (row ids, version numbers, page sizes).

`str.isdigit()` alone is not enough: it admits "²", which `int()` refuses (a 500 where a 4xx
belongs), and "١", which `int()` reads as 1 (the wrong row). One check for every place that
turns text into an id, so none of them can drift back to the bare `isdigit()`.
"""

from __future__ import annotations

# Every id we store fits a signed 64-bit column; larger numbers would fail in the database.
LARGEST = 2**62


def whole_number(text: str | None, *, most: int = LARGEST) -> int | None:
    """`text` as an int if it is ASCII digits and at most `most`; otherwise None."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    value = int(text)
    return value if value <= most else None
