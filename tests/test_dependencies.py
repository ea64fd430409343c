"""Supply chain: the locked Python dependencies have no known vulnerabilities."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.images import LOCKS

# The locks: pip-audit alone, no Nginx and no engine.
pytestmark = pytest.mark.app


def test_locked_dependencies_have_no_known_vulnerabilities() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--require-hashes", "--disable-pip",
         "--progress-spinner", "off", *(f"--requirement={lock}" for lock in LOCKS)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No known vulnerabilities found" in result.stdout + result.stderr
