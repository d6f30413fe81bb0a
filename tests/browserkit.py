"""Headless Chromium for the browser tests: Debian's `chromium`, installed with apt when
missing (Playwright cannot download its own browsers here), so the README's test command needs
nothing else."""

from __future__ import annotations

import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
# As the machine's own check starts it: no background traffic to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def ensure_chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False,
                       capture_output=True, timeout=600)
        if shutil.which(CHROMIUM) is None:
            subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True,
                           timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                           capture_output=True, timeout=600)
    assert shutil.which(CHROMIUM) is not None, "Debian's chromium could not be installed"
    return CHROMIUM
