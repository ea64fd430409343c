"""Faults and load against the image (issue 5), each scenario at its short size.

The scenarios live in reliability/scenarios.py, shared with the full-size report
(`python -m reliability.run`); here each one must pass all its checks.
"""

from __future__ import annotations

import pytest

from harness.images import GUNICORN_ALONE
from reliability.scenarios import BODIES, HEADS, SCENARIOS, SHORT, slow_clients

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(run_container, name: str) -> None:  # type: ignore[no-untyped-def]
    result = SCENARIOS[name](run_container, SHORT)
    assert result.ok, result.explain()


def test_slow_clients_starve_gunicorn_alone(run_container) -> None:  # type: ignore[no-untyped-def]
    """The same attack on Gunicorn with no Nginx in front fails the check: what
    Nginx's buffering buys, and proof that the check can fail."""
    args, command = GUNICORN_ALONE
    result = slow_clients(lambda: run_container(args=args, command=command), SHORT)
    assert result.checks[f"the attack opened its {HEADS + BODIES} connections in each phase"]
    assert not result.checks["p99 under attack within 2x of without"], result.explain()
