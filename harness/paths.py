"""Where the repository is: the harness runs from tests, bench/ and reliability/ alike."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Small apps the tests add beside the app, as a user adds a module.
TEST_APPS = ROOT / "tests" / "apps"
# The template's one-route app, which tests copy into an app directory of their own.
EXAMPLE_APP = ROOT / "app" / "app.py"
