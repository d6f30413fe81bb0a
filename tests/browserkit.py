"""Headless Chromium for the browser tests: Debian's `chromium`, installed with apt when
missing (Playwright cannot download its own browsers here), so the README's test command needs
nothing else."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# As the machine's own check starts it: no background traffic to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def ensure_chromium() -> str:
    # Called once per xdist worker: two workers may both find chromium missing, and two
    # apt-gets at once fail on dpkg's lock. The first takes this lock and installs; the other
    # waits for it and then finds chromium there.
    lock_path = Path(tempfile.gettempdir()) / "tongban-tests-chromium.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if shutil.which(CHROMIUM) is None:
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False,
                               capture_output=True, timeout=600)
            if shutil.which(CHROMIUM) is None:
                subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True,
                               timeout=600)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                               capture_output=True, timeout=600)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert shutil.which(CHROMIUM) is not None, "Debian's chromium could not be installed"
    return CHROMIUM
