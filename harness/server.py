"""A server on a loopback port, local or in a container: finding a port, waiting for it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Protocol

import requests

START_TIMEOUT = 60


class Server(Protocol):
    base_url: str

    def logs(self) -> str: ...


class ServerError(RuntimeError):
    """A server did not start, or did not stop, in time; the message holds its output."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(base_url: str, alive: Callable[[], bool], logs: Callable[[], str],
                  poll: float = 0.1, path: str = "/healthz") -> None:
    """Wait for `path` to answer 200, failing early if the server died."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive():
            raise ServerError(f"server exited during start:\n{logs()}")
        try:
            if requests.get(f"{base_url}{path}", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(poll)
    raise ServerError(f"server not up after {START_TIMEOUT} s:\n{logs()}")
