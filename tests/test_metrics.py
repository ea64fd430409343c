"""The metrics on METRICS_PORT, on every running layer: what they count, that a
scrape is answered whatever the app does, and that no counter goes back through
the stack's real life (stack/metrics.py, stack/scoreboard.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from harness.checks import access_log
from harness.images import version
from harness.metrics import OPENMETRICS, Scrape, scrape
from harness.procfs import gunicorn_master, gunicorn_workers, main_pid, nginx_master, rss_kib
from harness.server import Server
from stack.metrics import DURATION_BUCKETS
from stack.settings import load

COUNT = "http_server_request_duration_seconds_count"
REPLACED = "gunicorn_worker_replacements_total"
SCRAPE_BUDGET_SECONDS = 1.0  # the bound while the app is busy or draining
# Issue 21: after as many replaced workers a scrape still takes FAST_SCRAPE_SECONDS.
REPLACEMENTS = 1000
FAST_SCRAPE_SECONDS = 0.05
REPLACED_ON_EVERY_LAYER = 100
# nginx-prometheus-exporter's names for stub_status.
NGINX = ("nginx_connections_active", "nginx_connections_reading", "nginx_connections_writing",
         "nginx_connections_waiting", "nginx_connections_accepted",
         "nginx_connections_handled", "nginx_http_requests_total")
# Counters: they never go back. Nginx's connection counters are untyped (docs/observability.md).
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
UNTYPED_COUNTERS = ("nginx_connections_accepted", "nginx_connections_handled")


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


def answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5).status_code == 200
    return False


def test_what_runs_is_named(launch) -> None:
    """The build, Gunicorn, and Nginx under the exporter's names, with a request in
    flight and an idle kept-alive connection to show."""
    server = launch(APP_MODULE="slow:app")
    (info,) = scrape(server.metrics_url).series("flask_stack_build_info")
    assert info["version"] == version()
    assert set(info) == {"version", "python_version", "nginx_version", "gunicorn_version"}
    with requests.Session() as idle, ThreadPoolExecutor(1) as pool:
        assert idle.get(f"{server.base_url}/", timeout=10).status_code == 200
        held = pool.submit(requests.get, f"{server.base_url}/slow?seconds=2", timeout=10)
        # Gunicorn boots its workers one after another: the first may answer alone.
        found = wait_for(lambda: (s := scrape(server.metrics_url)).value(
            "http_server_active_requests") >= 1 and s.value("gunicorn_workers") >= 2 and s,
            2, "the slow request in flight, and the workers up")
        assert held.result().status_code == 200
    assert found.value("nginx_up") == 1
    assert {name for name, _ in found.samples} >= set(NGINX)
    active, _reading, writing, waiting, accepted, handled, requested = (
        found.value(name) for name in NGINX)
    # Writing: the slow request, and this scrape's own to stub_status; waiting: the idle one.
    assert writing >= 2 and waiting >= 1
    assert active >= writing + waiting
    # Equal, unless Nginx ran out of connections or another of its workers accepted mid-read.
    assert accepted >= handled >= active
    assert requested >= 3  # the idle connection's, the slow one, this scrape's


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
    """No counter of `before` is missing from `after`, nor lower there."""
    for key, value in before.samples.items():
        name = key[0]
        if name.endswith(COUNTER_SUFFIXES) or name in UNTYPED_COUNTERS:
            assert key in after.samples, f"{key} vanished"
            assert after.samples[key] >= value, (key, value, after.samples[key])


def test_no_counter_goes_back_through_recycling_kills_and_restarts(launch) -> None:
    server = launch(APP_MODULE="slow:app", MAX_REQUESTS="20", TIMEOUT="2",
                    WEB_CONCURRENCY="2")
    url = f"{server.base_url}/"
    start = scrape(server.metrics_url)
    # A worker SIGKILLed: crashed. First: one killed as it retires would count as recycled.
    os.kill(gunicorn_workers(server)[0], signal.SIGKILL)
    crashed = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="crashed") == 1 and s, 10, "the killed worker counted")
    monotonic(start, crashed)
    with requests.Session() as session:
        for _ in range(120):  # past MAX_REQUESTS (plus its jitter) on both workers
            assert session.get(url, timeout=10).status_code == 200
    recycled = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="recycled") >= 2 and s, 10, "workers recycled")
    monotonic(crashed, recycled)
    # A request past TIMEOUT: its worker is replaced for it.
    assert requests.get(f"{server.base_url}/slow?seconds=60", timeout=30).status_code == 504
    timed_out = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        REPLACED, cause="timeout") == 1 and s, 15, "the timed-out worker counted")
    monotonic(recycled, timed_out)
    # The master SIGKILLed: Supervisord restarts it; nothing it counted is lost.
    os.kill(gunicorn_master(server), signal.SIGKILL)
    restarted = wait_for(lambda: (s := scrape(server.metrics_url)).value(
        "gunicorn_master_restarts_total") == 1 and s.value("gunicorn_workers") == 2 and s, 20,
        "the master restarted")
    wait_for(lambda: answers(url), 10, "serving again")
    served = scrape(server.metrics_url)
    monotonic(timed_out, served)
    assert restarted.value(REPLACED, cause="crashed") == 1  # its workers were not replacements
    # Nginx SIGKILLed: its counts start again; PID 1 adds what it last read of the old one.
    killed = nginx_master(server)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: nginx_master(server) not in (None, killed), 20, "Nginx restarted")
    wait_for(lambda: answers(url), 10, "serving again")
    monotonic(served, scrape(server.metrics_url))


def test_replaced_workers_leave_nothing_behind(launch) -> None:
    """On every running layer, the run directory and PID 1 of the container's own."""
    replaced_again_and_again(launch, REPLACED_ON_EVERY_LAYER)


@pytest.mark.stack  # Gunicorn sleeps up to 0.1 s after each spawn: a minute a layer
def test_a_thousand_replaced_workers_leave_nothing_behind(start_stack) -> None:
    replaced_again_and_again(start_stack, REPLACEMENTS)


def replaced_again_and_again(start: Callable[..., Server], replacements: int) -> None:
    """MAX_REQUESTS=1, whose jitter is 0: each worker is replaced after what it
    answered, `replacements` times over. Each is counted recycled once; a scrape
    then still takes under 50 ms; the run directory and PID 1 weigh no more than
    before."""
    settings = load({"MAX_REQUESTS": "1"})
    server = start(MAX_REQUESTS=str(settings.max_requests), WEB_CONCURRENCY="4")
    run_dir_size = run_dir_bytes(server)
    pid_1_memory = rss_kib(main_pid(server))
    url = f"{server.base_url}/"

    def client(count: int) -> int:
        with requests.Session() as session:
            return sum(session.get(url, timeout=30).status_code == 200 for _ in range(count))

    with ThreadPoolExecutor(4) as pool:
        # A worker may answer a few requests at once before it retires: send more
        # until the count is there.
        while (recycled := scrape(server.metrics_url).value(
                REPLACED, cause="recycled")) < replacements:
            batch = int(replacements - recycled) // 4 + 1
            assert sum(pool.map(client, [batch] * 4)) == batch * 4

    def counts() -> tuple[int, float, int, float]:
        """Workers that must have been recycled, were, may have been; workers alive."""
        found = scrape(server.metrics_url)
        answered = Counter(line["worker"] for line in access_log(server).values()
                           if line["worker"]).values()
        # Gunicorn retires a worker once it has answered MAX_REQUESTS plus its jitter.
        must = sum(n >= settings.max_requests + settings.max_requests_jitter for n in answered)
        may = sum(n >= settings.max_requests for n in answered)
        return must, found.value(REPLACED, cause="recycled"), may, found.value("gunicorn_workers")

    deadline = time.monotonic() + 30  # the last lines, the last workers replaced
    while not ((found := counts())[0] <= found[1] <= found[2] and found[3] == 4):
        assert time.monotonic() < deadline, f"must, recycled, may, alive: {found}"
        time.sleep(0.2)
    assert statistics.median(scrape(server.metrics_url).seconds for _ in range(9)) \
        <= FAST_SCRAPE_SECONDS
    assert run_dir_bytes(server) == run_dir_size
    assert rss_kib(main_pid(server)) <= pid_1_memory + 1024


def run_dir_bytes(server: Server) -> int:
    """What the run directory holds, read through PID 1's /proc (a container's too)."""
    run = Path(f"/proc/{main_pid(server)}/root") / server_run_dir(server).relative_to("/")
    return sum(path.stat().st_size for path in run.rglob("*") if path.is_file())


def server_run_dir(server: Server) -> Path:
    work = getattr(server, "work", None)
    return Path(work, "stack") if work else Path("/tmp/stack")
