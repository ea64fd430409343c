"""The access log (stack/accesslog.py): every request's line arrives, within a
second, and none is lost when an Nginx worker is killed mid-load or at a stop.
On the stack layer and the image layers, through the `launch` fixture."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, access_log, log_text
from harness.load import SteadyClient, percentile
from harness.procfs import nginx_workers
from harness.server import Server
from stack.logs import FLUSH_SECONDS, LATE_SECONDS

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


PIPE_PAGES_SOFT = Path("/proc/sys/fs/pipe-user-pages-soft")


@contextlib.contextmanager
def pipes_spent() -> Iterator[None]:
    """While inside, an unprivileged user's new pipes get the kernel's smallest
    size (8 KiB) and cannot grow, as when many containers of one UID run on a
    host and their pipes hold fs.pipe-user-pages-soft pages: the limit at one page."""
    before = PIPE_PAGES_SOFT.read_text()
    PIPE_PAGES_SOFT.write_text("1")
    try:
        yield
    finally:
        PIPE_PAGES_SOFT.write_text(before)


@pytest.mark.stack
def test_a_small_access_log_pipe_never_holds_nginx(start_stack, require) -> None:
    """With its pipe at 8 KiB, a tick's wait would let Nginx block on a full pipe
    for most of FLUSH_SECONDS every tick (requests stalled 185 ms, seen with 60
    containers of one UID on a host): PID 1 reads it as lines come instead."""
    require(os.geteuid() == 0, "lowering fs.pipe-user-pages-soft needs root")
    with pipes_spent():  # a pipe keeps the size it was made with
        server = start_stack()
    assert "the access log's pipe is 8 KiB" in log_text(server)
    path = f"/?small-pipe={uuid.uuid4().hex}"
    with SteadyClient(server.base_url, clients=CLIENTS, path=path, timeout=10) as load:
        time.sleep(3)
    assert not load.failures()
    latencies = [outcome.latency for outcome in load.snapshot()]
    assert percentile(latencies, 0.99) < FLUSH_SECONDS / 2, percentile(latencies, 0.99)
    time.sleep(LATE_SECONDS)
    assert len(logged(server, path)) == len(latencies)
