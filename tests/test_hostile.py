"""Hostile input and fuzzing (issue 5, items 6 and 7) on every layer.

The requests and the rules their answers keep live in reliability/hostile/,
shared with the report (`python -m reliability.run --only hostile_input fuzz`).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.containers import Container
from harness.local import LocalStack
from harness.procfs import descendants
from harness.rawhttp import healthy
from harness.server import Server
from reliability.hostile.cases import CASES, Case
from reliability.hostile.fuzzing import fuzz
from reliability.scenarios import SHORT

# The size CI runs (200 examples): about a second a layer, sequential requests
# each answered in milliseconds, so the fuzz runs on the stack, the image and
# the hardened image alike.
FUZZ_EXAMPLES = SHORT.examples

# Besides the layer of its `server`: the README's reliability layer.
pytestmark = pytest.mark.reliability


def process_tree(server: Server) -> Callable[[], set[int]]:
    """The server's processes now: all of them descend from the stack's entrypoint,
    or from the container's first process."""
    if isinstance(server, Container):
        root = int(server.inspect("{{.State.Pid}}"))
    else:
        assert isinstance(server, LocalStack) and server.process is not None
        root = server.process.pid
    return lambda: set(descendants(root))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_request_gets_a_clear_answer(server: Server, case: Case) -> None:
    answer = case.send(server.base_url)
    assert case.problems(answer) == [], f"sent {case.request[:300]!r}\ngot {answer}"


def test_healthy_after_the_hostile_requests(server: Server) -> None:
    # Pytest keeps the file's order: this runs after every case above, on each layer.
    assert healthy(server.base_url)


def test_fuzz(server: Server) -> None:
    # Without the server's output: a container's holds the bytes sent, not UTF-8,
    # which Container.logs() cannot decode. The figures show the requests that broke.
    result = fuzz(server.base_url, FUZZ_EXAMPLES, process_tree(server))
    assert result.ok, result.explain()
