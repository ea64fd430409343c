"""The metrics on METRICS_PORT, on every running layer: what they count, that a
scrape is answered whatever the app does, and that no counter goes back through
the stack's real life (stack/metrics.py, stack/scoreboard.py)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness.checks import access_log
from harness.images import version
from harness.metrics import OPENMETRICS, Scrape, scrape
from harness.procfs import cmdline, descendants, main_pid
from harness.server import Server
from stack import procfs
from stack.metrics import DURATION_BUCKETS

COUNT = "http_server_request_duration_seconds_count"
REPLACED = "gunicorn_worker_replacements_total"
SCRAPE_BUDGET_SECONDS = 1.0  # the bound while the app is busy or draining
REPLACEMENTS = 100


def gunicorn(server: Server) -> tuple[int, list[int]]:
    """The Gunicorn master's pid and its workers'."""
    pids = [pid for pid in descendants(main_pid(server)) if "gunicorn" in safe_cmdline(pid)]
    (master,) = [pid for pid in pids if procfs.stat(pid).ppid not in pids]
    return master, [pid for pid in pids if procfs.stat(pid).ppid == master]


def safe_cmdline(pid: int) -> str:
    try:
        return cmdline(pid)
    except OSError:
        return ""


def wait_for(condition, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not {what} after {seconds} s"
        time.sleep(0.1)
    return found


def test_every_answered_request_is_counted_once(launch) -> None:
    """The app's, the health check's, a static file's, Nginx's own 413: the
    histogram's count is the access log's lines, per status and route."""
    server = launch(APP_MODULE="slow:app")
    ids = []
    with requests.Session() as session:
        for method, path, body in [("GET", "/", None), ("GET", "/nope", None),
                                   ("GET", "/healthz", None), ("GET", "/orders/1", None),
                                   ("GET", "/orders/22", None), ("GET", "/static/robots.txt", None),
                                   ("POST", "/", b"x" * (2 << 20)), ("BREW", "/", None)]:
            answer = session.request(method, f"{server.base_url}{path}", data=body, timeout=10)
            ids.append(answer.headers["X-Request-ID"])
    lines = list(access_log(server, *ids).values())
    assert {line["request_id"] for line in lines} >= set(ids)
    found = scrape(server.metrics_url)
    assert found.total(COUNT) == len(lines)
    expected = Counter((line["method"] if line["method"] != "BREW" else "_OTHER",
                        str(line["status"]), line["route"]) for line in lines)
    for (method, status, route), count in expected.items():
        assert found.value(COUNT, http_request_method=method, http_response_status_code=status,
                           http_route=route) == count, (method, status, route)
    routes = {series["http_route"] for series in found.series(COUNT)}
    # Route templates, never paths; fixed names where the app matched none.
    assert routes == {"/", "unmatched", "/healthz", "/orders/<int:order_id>", "static", "nginx"}


def test_a_slow_route_lands_in_its_bucket(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    answer = requests.get(f"{server.base_url}/slow?seconds=0.3", timeout=10)
    access_log(server, answer.headers["X-Request-ID"])
    found = scrape(server.metrics_url)
    bucket = "http_server_request_duration_seconds_bucket"
    labels = {"http_request_method": "GET", "http_response_status_code": "200",
              "http_route": "/slow"}
    below, above = max(b for b in DURATION_BUCKETS if b < 0.3), min(
        b for b in DURATION_BUCKETS if b > 0.3)
    assert found.value(bucket, le=str(below), **labels) == 0
    assert found.value(bucket, le=str(above), **labels) == 1


def test_the_apps_own_metrics_route_still_answers_on_its_port(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    assert requests.get(f"{server.base_url}/metrics", timeout=10).text == \
        "the app's own /metrics\n"
    # Nginx's stub_status is reachable from no port of the app's.
    assert "Active connections" not in requests.get(f"{server.base_url}/stub_status",
                                                    timeout=10).text


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_metrics_off_closes_the_port(launch) -> None:
    server = launch(METRICS="off")
    with pytest.raises(requests.ConnectionError):
        requests.get(server.metrics_url, timeout=5)


def test_openmetrics_when_the_scraper_asks(launch) -> None:
    server = launch()
    answer = requests.get(server.metrics_url, headers={"Accept": OPENMETRICS}, timeout=5)
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
    plain = requests.get(server.metrics_url, timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain")


def test_what_runs_is_named(launch) -> None:
    server = launch()
    (info,) = scrape(server.metrics_url).series("flask_stack_build_info")
    assert info["version"] == version()
    assert set(info) == {"version", "python_version", "nginx_version", "gunicorn_version"}
    found = scrape(server.metrics_url)
    assert found.value("nginx_up") == 1
    assert found.value("gunicorn_workers") >= 2
    assert found.value("nginx_connections_accepted") >= 1
    assert found.value("nginx_http_requests_total") >= 1


def test_a_scrape_is_answered_while_every_thread_is_busy(launch) -> None:
    server = launch(APP_MODULE="slow:app", WEB_CONCURRENCY="1", THREADS="2")
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(requests.get, f"{server.base_url}/slow?seconds=4", timeout=30)
                for _ in range(3)]
        busy = wait_for(lambda: (s := scrape(server.metrics_url)).value(
            "gunicorn_threads_busy") == 2 and s.value("http_server_active_requests") == 3
            and s, 3, "both threads busy, and a request waiting")
        assert busy.seconds < SCRAPE_BUDGET_SECONDS
        assert busy.value("gunicorn_threads") == 2
        assert [f.result().status_code for f in held] == [200] * 3


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_a_scrape_is_answered_while_the_container_drains(launch) -> None:
    server = launch(DRAIN_SECONDS="3")
    server.terminate()  # type: ignore[attr-defined]
    wait_for(lambda: requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 503,
             2, "draining")
    assert scrape(server.metrics_url).seconds < SCRAPE_BUDGET_SECONDS
    assert server.wait_exit(20) == 0  # type: ignore[attr-defined]


def monotonic(before: Scrape, after: Scrape) -> None:
    """No counter of `before` is lower in `after`."""
    for key, value in before.samples.items():
        name = key[0]
        if name.endswith(("_total", "_count", "_sum", "_bucket")) and key in after.samples:
            assert after.samples[key] >= value, (key, value, after.samples[key])


def test_no_counter_goes_back_through_recycling_kills_and_restarts(launch) -> None:
    server = launch(APP_MODULE="slow:app", MAX_REQUESTS="20", TIMEOUT="2",
                    WEB_CONCURRENCY="2")
    url = f"{server.base_url}/"
    start = scrape(server.metrics_url)
    with requests.Session() as session:
        for _ in range(120):  # past MAX_REQUESTS (plus its jitter) on both workers
            assert session.get(url, timeout=10).status_code == 200
    recycled = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="recycled") >= 2 and s, 10, "workers recycled")
    monotonic(start, recycled)
    # A worker SIGKILLed: crashed.
    _, workers = gunicorn(server)
    os.kill(workers[0], signal.SIGKILL)
    crashed = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="crashed") == 1 and s, 10, "the killed worker counted")
    monotonic(recycled, crashed)
    # A request past TIMEOUT: its worker is replaced for it.
    assert requests.get(f"{server.base_url}/slow?seconds=60", timeout=30).status_code == 504
    timed_out = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="timeout") == 1 and s, 15, "the timed-out worker counted")
    monotonic(crashed, timed_out)
    # The master SIGKILLed: Supervisord restarts it; nothing it counted is lost.
    master, _ = gunicorn(server)
    os.kill(master, signal.SIGKILL)
    restarted = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        "gunicorn_master_restarts_total") == 1 and s.value("gunicorn_workers") == 2 and s, 20,
        "the master restarted")
    wait_for(lambda: requests.get(url, timeout=10).status_code == 200, 10, "serving again")
    monotonic(timed_out, scrape(server.metrics_url))
    assert restarted.value(REPLACED, cause="crashed") == 1  # its workers were not replacements


def test_replaced_workers_leave_nothing_behind(launch) -> None:
    """MAX_REQUESTS=1: workers replaced again and again. The run directory
    and PID 1 weigh no more afterwards (test_scoreboard.py takes a thousand)."""
    server = launch(MAX_REQUESTS="1", WEB_CONCURRENCY="4")
    run_dir_size = run_dir_bytes(server)
    pid_1_memory = rss_kib(main_pid(server))
    url = f"{server.base_url}/"

    def client(_: int) -> int:
        with requests.Session() as session:
            return sum(session.get(url, timeout=30).status_code == 200 for _ in range(25))

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(client, range(4))) == REPLACEMENTS
    # A recycled worker still answers, for a moment, on its kept-alive connections.
    wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="recycled") >= REPLACEMENTS / 10 and s.value("gunicorn_workers") == 4,
        30, "workers recycled, and all back")
    assert run_dir_bytes(server) == run_dir_size
    assert rss_kib(main_pid(server)) <= pid_1_memory + 1024


def run_dir_bytes(server: Server) -> int:
    """What the run directory holds, read through PID 1's /proc (a container's too)."""
    run = Path(f"/proc/{main_pid(server)}/root") / server_run_dir(server).relative_to("/")
    return sum(path.stat().st_size for path in run.rglob("*") if path.is_file())


def server_run_dir(server: Server) -> Path:
    work = getattr(server, "work", None)
    return Path(work, "stack") if work else Path("/tmp/stack")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
