"""A real Prometheus scrapes the running container, hardened too, with
deploy/prometheus/'s configuration and rules, and its PromQL counts exactly what
the test sent: in total, per status and per route; a route that sleeps a known
time lands in its bucket (harness/prometheus.py)."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from harness.checks import access_log
from harness.containers import Container
from harness.images import HARDENED
from harness.prometheus import SCRAPE_SECONDS, Prometheus

COUNT = "http_server_request_duration_seconds_count"
BUCKET = "http_server_request_duration_seconds_bucket"
# The load the test sends: (method, path, body) -> how many; and what each is
# counted under (status, route).
LOAD = {("GET", "/", None): 30, ("GET", "/nope", None): 10, ("GET", "/orders/7", None): 6,
        ("GET", "/orders/8", None): 6, ("GET", "/slow?seconds=0.3", None): 5,
        ("POST", "/", b"x" * (2 << 20)): 3}
COUNTED = {"/": ("200", "/"), "/nope": ("404", "unmatched"),
           "/orders/7": ("200", "/orders/<int:order_id>"),
           "/orders/8": ("200", "/orders/<int:order_id>"),
           "/slow?seconds=0.3": ("200", "/slow")}


def send(server: Container, load: dict[tuple[str, str, bytes | None], int]) -> None:
    """The load, then its access log lines awaited: PID 1 has counted it all."""
    ids = []
    with requests.Session() as session:
        for (method, path, body), times in load.items():
            for _ in range(times):
                answer = session.request(method, f"{server.base_url}{path}", data=body,
                                         timeout=10)
                ids.append(answer.headers["X-Request-ID"])
    assert set(ids) <= set(access_log(server, *ids))


def last_scrape(prometheus: Prometheus) -> float:
    """The time of a scrape made after now (Prometheus's own timestamp)."""
    now = time.time()
    deadline = now + 10 * SCRAPE_SECONDS
    while not (after := [t for t in prometheus.scrapes(now - 5, time.time()) if t > now + 0.1]):
        assert time.time() < deadline, prometheus.logs()
        time.sleep(SCRAPE_SECONDS / 2)
    return after[0]


@pytest.mark.parametrize("hardening", [
    pytest.param((), marks=pytest.mark.image, id="image"),
    pytest.param(HARDENED, marks=pytest.mark.hardened, id="hardened")])
def test_promql_counts_exactly_what_was_sent(run_container: Callable[..., Container],
                                             tmp_path: Path, require: Callable[..., None],
                                             hardening: tuple[str, ...]) -> None:
    require(shutil.which("prometheus"), "prometheus is not installed (apt-get install prometheus)")
    server = run_container(env={"APP_MODULE": "slow:app"}, args=hardening)
    prometheus = Prometheus(work=tmp_path, target=f"127.0.0.1:{server.metrics_port}").start()
    try:
        send(server, dict.fromkeys(LOAD, 1))  # every series exists before the window
        start = last_scrape(prometheus)
        send(server, LOAD)
        end = last_scrape(prometheus)
        # The window from one scrape to another, exactly: increase() then has
        # nothing to extrapolate (its range is closed at both ends).
        window = f"[{round((end - start) * 1000)}ms]"
        # The engine's own health checks come too: not the test's load.
        selector = '{http_route!="/healthz"}'
        by_group = prometheus.query(
            f"sum by (http_response_status_code, http_route) "
            f"(increase({COUNT}{selector}{window}))", at=end)
        counted = {(item["metric"]["http_response_status_code"], item["metric"]["http_route"]):
                   float(item["value"][1]) for item in by_group}
        sent: Counter[tuple[str, str]] = Counter()
        for (method, path, _), times in LOAD.items():
            sent[COUNTED[path] if method == "GET" else ("413", "nginx")] += times
        assert counted == {group: float(times) for group, times in sent.items()}
        (total,) = prometheus.query(f"sum(increase({COUNT}{selector}{window}))", at=end)
        assert float(total["value"][1]) == sum(LOAD.values())
        (median,) = prometheus.query(
            f'histogram_quantile(0.5, sum by (le) (increase({BUCKET}{{http_route="/slow"}}'
            f"{window})))", at=end)
        assert 0.25 < float(median["value"][1]) <= 0.5
        # The shipped recording rules evaluate on what it scrapes.
        assert prometheus.query("job:gunicorn_threads_busy:ratio")
    finally:
        prometheus.stop()
