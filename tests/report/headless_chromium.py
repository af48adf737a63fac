"""Open a page in a real headless Chromium: its DOM after scripts ran, and a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SKIP_ENV = "MODELVIZ_SKIP_BROWSER"
INSTALL_HINT = (
    "Chromium is needed to check the HTML report in a real browser and was not found on PATH. "
    "Install it (Debian/Ubuntu: `apt-get install -y chromium`), or set MODELVIZ_SKIP_BROWSER=1 to "
    "skip the browser checks on purpose."
)


# Appended to a copy of a page: after load, record which images failed to load.
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (i) { return !i.naturalWidth; });
  document.body.setAttribute("data-images", document.images.length);
  document.body.setAttribute("data-broken", broken.map(function (i) { return i.getAttribute("src"); }).join(" "));
});
</script>"""


def find_chromium() -> str:
    """The Chromium binary; fails the test (never skips silently) unless skipping was asked for."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser checks skipped")
    pytest.fail(INSTALL_HINT, pytrace=False)


def _run(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def dump_dom(binary: str, page: Path, profile: Path) -> str:
    result = _run(binary, profile, "--dump-dom", page.resolve().as_uri())
    assert result.returncode == 0, f"chromium --dump-dom failed:\n{result.stderr[-3000:]}"
    return result.stdout


def screenshot(binary: str, page: Path, profile: Path, png: Path, size: str = "1280,2000") -> None:
    result = _run(binary, profile, f"--screenshot={png}", f"--window-size={size}", page.resolve().as_uri())
    assert result.returncode == 0 and png.is_file(), f"chromium --screenshot failed:\n{result.stderr[-3000:]}"
