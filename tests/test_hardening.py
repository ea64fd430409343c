"""Image layer: each restriction alone (all at once is the `hardened` layer of every test)."""

from __future__ import annotations

import pytest
import requests

from harness.containers import Container
from harness.images import HARDENED

pytestmark = [pytest.mark.hardened, pytest.mark.engine]

# --read-only goes with its tmpfs for /tmp; the others stand alone.
RESTRICTIONS = [HARDENED[:2], *[(option,) for option in HARDENED[2:]]]


@pytest.mark.parametrize("args", RESTRICTIONS, ids=lambda args: args[0].split("=")[0])
def test_contract_and_stop_under_one_restriction(run_container, args: tuple[str, ...]) -> None:
    server = run_container(args=args)
    response = requests.get(f"{server.base_url}/", timeout=10)
    assert response.status_code == 200 and response.json() == {"msg": "Success!"}
    assert requests.get(f"{server.base_url}/nope", timeout=10).json()["status"] == 404
    assert server.stop() == 0


def test_healthcheck_passes_hardened(hardened_container: Container) -> None:
    """The engine runs the HEALTHCHECK inside the restrictions too (seccomp, any UID)."""
    hardened_container.wait_healthy()
