"""The access log (stack/accesslog.py): every request's line arrives, within a
second, and none is lost when an Nginx worker is killed mid-load or at a stop.
On the stack layer and the image layers, through the `launch` fixture."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, access_log
from harness.load import SteadyClient
from harness.procfs import nginx_workers
from harness.server import Server
from stack.logs import LATE_SECONDS

# What it shows goes through the engine (its options, its logs): both engines.
pytestmark = pytest.mark.engine

CLIENTS = 8


def logged(server: Server, path: str) -> list[dict]:
    """The access log's lines of requests for `path` that Nginx answered 200."""
    return [line for line in access_log(server).values()
            if line["uri"] == path and line["status"] == 200]


def answered(load: SteadyClient) -> int:
    return sum(outcome.status == 200 for outcome in load.snapshot())


def test_every_line_arrives_within_a_second(launch) -> None:
    server = launch()
    ids = []
    with requests.Session() as session:
        for _ in range(300):
            response = session.get(f"{server.base_url}/?late={uuid.uuid4().hex}", timeout=10)
            assert response.status_code == 200
            ids.append(response.headers["X-Request-ID"])
    time.sleep(LATE_SECONDS)
    missing = set(ids) - set(access_log(server))
    assert not missing, f"{len(missing)} of {len(ids)} lines not there after {LATE_SECONDS} s"


def test_no_line_lost_when_an_nginx_worker_is_killed(launch) -> None:
    server = launch()
    path = f"/?killed={uuid.uuid4().hex}"
    with SteadyClient(server.base_url, clients=CLIENTS, path=path, timeout=10) as load:
        time.sleep(1)
        workers = nginx_workers(server)
        assert workers, "no Nginx worker found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)  # the master starts another; the load goes on through it
    time.sleep(LATE_SECONDS)
    count = answered(load)
    assert count > 0
    # Nginx logs a request right after its last byte is sent: a worker killed in
    # between loses that one line, the request it was finishing. Every line
    # already written survives (a buffer in the worker would lose them all).
    missing = count - len(logged(server, path))
    assert missing <= len(workers), f"{count} answered, {missing} lines missing"


def test_no_line_lost_at_stop(launch) -> None:
    server = launch()
    path = f"/?stopped={uuid.uuid4().hex}"
    with SteadyClient(server.base_url, clients=CLIENTS, path=path, timeout=10) as load:
        time.sleep(1)
        server.terminate()  # type: ignore[attr-defined]
        assert server.wait_exit(STOP_BUDGET_SECONDS) == 0  # type: ignore[attr-defined]
    count = answered(load)
    assert count > 0
    assert len(logged(server, path)) >= count, f"{count} answered, fewer lines"
