"""The README's main command: `tongban demo` runs three gateway processes and a real case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_a_cross_city_case(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "three gateways up" in out
    assert "case.submit  斗门 → 桃源: signed, delivered, receipt verified (accepted)" in out
    assert "case.accept  桃源 → 斗门: signed, delivered, receipt verified (accepted)" in out
    assert "常德市桃源县 inbox: case.submit" in out
    assert "珠海市斗门区 inbox: case.accept" in out
    for city in ("kunming", "doumen", "taoyuan"):
        assert (tmp_path / "demo" / city / f"{city}.db").exists()
    # Running it again in the same folder is refused rather than mixing two federations.
    again = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("tongban: error:")
