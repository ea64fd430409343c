"""Image layer, as a person sees it: headless Chromium opens the page on port 1300."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.browser import FLAGS
from harness.containers import Container

pytestmark = pytest.mark.image


@pytest.fixture
def chromium(require: Callable[[object, str], None]
             ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """chromium(*args, profile=DIR): headless Chromium run once."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    require(binary, "Chromium is not installed (apt-get install chromium)")

    def run(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)

    return run


def test_browser_shows_the_json(container: Container, tmp_path: Path,
                                chromium: Callable[..., subprocess.CompletedProcess[str]]
                                ) -> None:
    page = chromium("--dump-dom", f"{container.base_url}/", profile=tmp_path / "profile")
    assert page.returncode == 0, page.stderr
    shown = re.search(r"<pre[^>]*>(.*?)</pre>", page.stdout, re.S)
    assert shown, page.stdout
    assert json.loads(html.unescape(shown[1])) == {"msg": "Success!"}

    screenshot = tmp_path / "page.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=800,200",
                    f"{container.base_url}/", profile=tmp_path / "profile")
    assert shot.returncode == 0, shot.stderr
    assert screenshot.read_bytes().startswith(b"\x89PNG")
