"""Supply chain: every locked Python dependency, the image's and the tests', has no
known vulnerability (pip-audit against PyPI's advisory data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import ROOT

# The locks: pip-audit alone, no Nginx and no engine.
pytestmark = pytest.mark.app

# Every hash-locked file in the repository: the stack's, the app's, each
# example's, the tests' own and checkov's.
LOCKS = sorted(ROOT / path for path in subprocess.run(
    ["git", "ls-files", "*requirements*.txt"], cwd=ROOT, capture_output=True, text=True,
    check=True).stdout.split())


def test_every_lock_is_audited() -> None:
    named = {str(lock.relative_to(ROOT)) for lock in LOCKS}
    assert {"stack/requirements.txt", "app/requirements.txt", "tests/requirements.txt",
            "tests/requirements-checkov.txt"} <= named
    assert any(name.startswith("examples/") for name in named)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: str(lock.relative_to(ROOT)))
def test_locked_dependencies_have_no_known_vulnerabilities(lock: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--require-hashes", "--disable-pip",
         "--progress-spinner", "off", f"--requirement={lock}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No known vulnerabilities found" in result.stdout + result.stderr
