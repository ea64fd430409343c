"""Faults and load against the image (issue 5), each scenario at its short size.

The scenarios live in reliability/scenarios.py, shared with the full-size report
(`python -m reliability.run`); here each one must pass all its checks.
"""

from __future__ import annotations

import pytest

from reliability.scenarios import SCENARIOS, SHORT


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(run_container, name: str) -> None:  # type: ignore[no-untyped-def]
    result = SCENARIOS[name](run_container, SHORT)
    assert result.ok, result.explain()
