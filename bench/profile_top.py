"""Summarise py-spy collapsed stacks (`--format raw`): where the samples of a process went.

    python -m bench.profile_top FILE... [--top 25] [--focus SUBSTRING]

Prints, per file, the functions with the most samples on the CPU themselves (self) and the
functions most often on the stack (inclusive, each counted once per sample), as percentages of
all samples of that process.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({match['file']})"


def package(name: str) -> str:
    """`sqlalchemy`, `jwt`, `gateway/db`, `json`, ...: where a frame's code lives."""
    match = re.search(r"\(([^()]*)\)$", name)
    if match is None or not match[1]:
        return "(no Python frame: native code or waiting for the GIL)"
    parts = match[1].split("/")
    if parts[0] in ("gateway", "registry", "trust", "bench") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def summarise(path: Path, top: int, focus: str | None) -> str:
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        stack, count = match[1].split(";"), int(match[2])
        names = [frame_name(f) for f in stack if f]
        if focus and not any(focus in n for n in names):
            continue
        total += count
        own[names[-1] if names else "(no frame)"] += count
        packages[package(names[-1]) if names else package("")] += count
        for name in set(names):
            inclusive[name] += count
    lines = [f"== {path.name}: {total} samples"]
    if not total:
        return "\n".join(lines)
    lines.append("-- self, by package of the running function")
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in packages.most_common(12)]
    lines.append("-- self")
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("-- inclusive")
    lines += [f"{100 * n / total:6.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus", default=None, help="only samples with this frame text")
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top, args.focus))
        print()


if __name__ == "__main__":
    main()
