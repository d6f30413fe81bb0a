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
    assert "routed to CN-430725 桃源" in out
    assert "case.submit signed, delivered, receipt verified" in out
    # The timeline runs from the window's intake to the applicant's evaluation, and both
    # cities hold the same copy.
    steps = [line.split()[2] for line in out.splitlines() if line.startswith("  ")]
    assert steps[0] == "window.intake" and steps[-1] == "case.evaluate"
    assert "case.supplement_request" in steps and "case.conclude" in steps
    assert "桃源's copy holds the same transitions" in out
    # Both authorities decide in their own case systems: Taoyuan's over REST (webhook pushes),
    # Doumen's over SOAP (polled); the decisions in the timeline are the adapter's.
    assert "桃源's own case system (REST adapter) took it as TY0" in out
    assert "a SOAP service (SOAP adapter, polled); it took case CN-430725:" in out
    assert "桃源's window sees it concluded" in out
    deciders = {line.split()[-1] for line in out.splitlines() if line.startswith("  ")
                and line.split()[2] in ("case.accept", "case.conclude")}
    assert deciders == {"system:adapter:rest"}, deciders
    assert "4307251988" not in out  # the worker's ID number is masked
    for city in ("kunming", "doumen", "taoyuan"):
        assert (tmp_path / "demo" / city / f"{city}.db").exists()
    for city in ("doumen", "taoyuan"):
        assert (tmp_path / "demo" / city / "local-system.sqlite").exists()
    # Running it again in the same folder is refused rather than mixing two federations.
    again = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("tongban: error:")
