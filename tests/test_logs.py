"""One JSON log stream: every line the container writes, on every running layer,
is one record with `time`, `level`, `source` and `message`; the app's own lines
carry their request's ids with no code in the app (stack/logs.py, stack/logformat.py)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import signal
import termios
import time
from typing import IO

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, access_log, records
from harness.local import LocalStack
from harness.metrics import scrape
from harness.procfs import gunicorn_master, nginx_master
from harness.server import Server
from stack.logformat import LEVELS, SOURCES
from stack.logs import FLUSH_SECONDS
from stack.settings import defaults

TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"
RESTART_SECONDS = 10
STALL_ROUNDS = 50  # of LINES_PER_PAGE requests: lines for five 64 KiB pipes
LINES_PER_PAGE = 20  # requests whose access log lines are more than a page (4 KiB)


def exercise(server: Server) -> None:
    """Requests that make every source write: the app (its logging, a print, a
    traceback), Gunicorn, Nginx (an error of its own), the stack's health path."""
    base = server.base_url
    for path in ("/", "/nope", "/healthz", "/static/robots.txt", "/fail"):
        requests.get(f"{base}{path}", timeout=10)
    requests.get(f"{base}/log?said=ids", timeout=10,
                 headers={"X-Request-ID": "logged-1", "traceparent": TRACEPARENT})
    requests.post(f"{base}/", data=b"x" * (2 << 20), timeout=10)  # 413, from Nginx


def stopped_logs(server: Server) -> str:
    server.terminate()  # type: ignore[attr-defined]
    assert server.wait_exit(STOP_BUDGET_SECONDS) == 0  # type: ignore[attr-defined]
    return server.logs()


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_every_line_is_one_record_from_every_source(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    exercise(server)
    assert "logged-1" in access_log(server, "logged-1")
    text = stopped_logs(server)
    lines = text.splitlines()
    found = records(text)
    assert len(found) == len(lines), [line for line in lines if not line.startswith("{")]
    for fields in found:
        assert {"time", "level", "source", "message"} <= set(fields), fields
        assert fields["source"] in SOURCES and fields["level"] in LEVELS, fields
        time.strptime(fields["time"][:19], "%Y-%m-%dT%H:%M:%S")
    assert {fields["source"] for fields in found} == set(SOURCES)


def test_the_apps_lines_carry_their_requests_ids(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    requests.get(f"{server.base_url}/log?said=joined", timeout=10,
                 headers={"X-Request-ID": "joined-1", "traceparent": TRACEPARENT})
    line = access_log(server, "joined-1")["joined-1"]
    assert line["trace_id"] == TRACE
    found = records(stopped_logs(server))
    logged = [f for f in found if f["source"] == "app" and "joined" in f["message"]]
    by_logging = [f for f in logged if f["message"] in ("logged: joined", "flask logged: joined")]
    assert len(by_logging) == 2, logged
    for fields in by_logging:
        assert (fields["request_id"], fields["trace_id"]) == ("joined-1", TRACE), fields
    # What the app prints itself reaches the log too, as the app's.
    assert [f["message"] for f in logged if f["message"].startswith("printed")] == [
        "printed: joined"]


def test_a_traceparent_reaches_the_app_unchanged(launch) -> None:
    """W3C trace context passes through Nginx as the client sent it: the app's own
    tracing continues the client's trace."""
    server = launch(APP_MODULE="echo:app")
    state = "vendor=opaque-1,other=b7ad6b7169203331"
    answer = requests.get(f"{server.base_url}/", timeout=10,
                          headers={"traceparent": TRACEPARENT, "tracestate": state})
    seen = answer.json()["headers"]
    assert (seen["HTTP_TRACEPARENT"], seen["HTTP_TRACESTATE"]) == (TRACEPARENT, state)


def test_a_traceback_stays_in_its_lines_record(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    answer = requests.get(f"{server.base_url}/fail", timeout=10)
    assert answer.status_code == 500
    request_id = answer.headers["X-Request-ID"]
    found = records(stopped_logs(server))
    failed = [f for f in found if f.get("exception")]
    assert failed  # the example app logs it, and Flask too
    for fields in failed:
        assert fields["source"] == "app" and fields["level"] == "error"
        assert fields["request_id"] == request_id
        assert "Traceback (most recent call last)" in fields["exception"]
        assert "ZeroDivisionError: failed on purpose" in fields["exception"]
    assert not [f for f in found if f["message"].startswith(("Traceback", "  File"))]


def test_text_for_a_person_at_a_terminal(launch) -> None:
    server = launch(APP_MODULE="slow:app", LOG_FORMAT="text")
    requests.get(f"{server.base_url}/log?said=text", timeout=10)
    time.sleep(0.5)
    lines = stopped_logs(server).splitlines()
    assert lines and not records("\n".join(lines))
    (logged,) = [line for line in lines if "logged: text" in line and "flask" not in line]
    assert " WARNING  app: logged: text" in logged
    assert any(" INFO     nginx: GET /log?said=text 200" in line for line in lines)


def restarted(server: Server, program: str) -> None:
    """SIGKILL to the program's master; Supervisord must start another and the
    stack serve again, whatever stdout does."""
    find = {"gunicorn": gunicorn_master, "nginx": nginx_master}[program]
    master = find(server)
    assert master, program
    os.kill(master, signal.SIGKILL)
    deadline = time.monotonic() + RESTART_SECONDS
    while find(server) in (None, master):
        assert time.monotonic() < deadline, f"{program} not restarted in {RESTART_SECONDS} s"
        time.sleep(0.1)
    while True:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.base_url}/", timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"not serving {RESTART_SECONDS} s after {program}"
        time.sleep(0.1)


def unread(pipe: IO[bytes]) -> int:
    """Bytes waiting in a pipe for its reader (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(pipe.fileno(), termios.FIONREAD, count)
    return count[0]


def stall(server: LocalStack) -> None:
    """Fill the stack's stdout, which nobody reads, with access log lines until it
    is full: it holds the pipe's size, or it grew no more over two rounds of more
    than a page of lines, each flushed (small writes leave a page's end unused)."""
    size = fcntl.fcntl(server.output.fileno(), fcntl.F_GETPIPE_SZ)
    seen: list[int] = []
    with requests.Session() as session:
        for _ in range(STALL_ROUNDS):
            seen.append(unread(server.output))
            if seen[-1] == size or seen[-3:] == [seen[-1]] * 3:
                return
            for _ in range(LINES_PER_PAGE):
                assert session.get(f"{server.base_url}/", timeout=10).status_code == 200
            time.sleep(3 * FLUSH_SECONDS)  # read from the access log, and flushed
    raise AssertionError(f"stdout not full: {seen[-1]} of {size} bytes")


@pytest.mark.stack
def test_a_stalled_stdout_never_stops_the_supervision(start_stack) -> None:
    """stdout on a pipe that nobody reads (a stalled log driver): PID 1 goes on
    restarting what crashes, and a stop meanwhile ends on time, with 0."""
    server = start_stack(APP_MODULE="slow:app", drain_output=False)
    stall(server)
    restarted(server, "gunicorn")
    restarted(server, "nginx")
    ceiling = defaults().stop_ceiling
    started = time.monotonic()
    assert server.stop(ceiling) == 0
    assert time.monotonic() - started < ceiling


@pytest.mark.stack
def test_a_stalled_then_closed_stdout_never_stops_the_supervision(start_stack) -> None:
    """stdout stalled, then closed (a gone log driver): every line counts as
    dropped, PID 1 goes on restarting what crashes and stops on time."""
    server = start_stack(APP_MODULE="slow:app", drain_output=False)
    stall(server)
    server.output.close()  # the reader is gone: every write is EPIPE now
    with requests.Session() as session:
        for _ in range(100):
            assert session.get(f"{server.base_url}/", timeout=10).status_code == 200
    restarted(server, "gunicorn")
    dropped = scrape(server.metrics_url).value("flask_stack_log_lines_dropped_total")
    assert dropped > 0
    ceiling = defaults().stop_ceiling
    started = time.monotonic()
    assert server.stop(ceiling) == 0
    assert time.monotonic() - started < ceiling
