"""Start, stop, drain, fail fast and settings: each on the stack layer and the image layer."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, access_log, assert_json_error


@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("WEB_CONCURRENCY", "abc", "a whole number from 1 to 256"),
    ("TIMEOUT", "-1", "a whole number of seconds"),
    ("WORKER_CLASS", "eventlet", "gthread or sync"),
    ("TRUSTED_PROXIES", "10.0.0.300", "IP addresses or CIDR networks"),
    ("MAX_BODY_SIZE", "lots", "a size from 1 to 1g"),
    ("ACCESS_LOG", "maybe", "on or off"),
    ("APP_MODULE", "app", "module:callable"),
])
def test_bad_setting_stops_the_start_with_one_line(launch, name: str, value: str,
                                                   accepted: str) -> None:
    server = launch(wait=False, **{name: value})
    assert server.wait_exit(30) == 78
    lines = server.logs().strip().splitlines()
    assert len(lines) == 1, lines
    assert name in lines[0] and repr(value) in lines[0] and accepted in lines[0]


def test_app_that_cannot_import_fails_fast(launch) -> None:
    started = time.monotonic()
    server = launch(wait=False, APP_MODULE="broken:app")
    assert server.wait_exit(30) == 1
    assert time.monotonic() - started < 20
    logs = server.logs()
    assert "KeyError: 'BROKEN_APP_DATABASE_URL'" in logs
    assert re.search(r"watchdog: gunicorn (could not start|crashed \d+ times in 60 s)", logs)


def test_first_answers_are_never_502(launch) -> None:
    server = launch(wait=False)
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 20 and time.monotonic() < deadline:
        try:
            seen.append(requests.get(f"{server.base_url}/", timeout=5).status_code)
        except requests.ConnectionError:
            time.sleep(0.01)  # not listening yet: a load balancer retries elsewhere
    assert seen == [200] * 20


def test_graceful_stop_finishes_in_flight_requests(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    with ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(requests.get, f"{server.base_url}/slow?seconds=2", timeout=20)
                     for _ in range(4)]
        time.sleep(0.5)
        started = time.monotonic()
        server.terminate()
        assert [f.result().status_code for f in in_flight] == [200] * 4
        assert server.wait_exit(STOP_BUDGET_SECONDS) == 0
    assert time.monotonic() - started < STOP_BUDGET_SECONDS


def test_drain_turns_health_503_while_serving(launch) -> None:
    drain = 3
    server = launch(DRAIN_SECONDS=str(drain))
    session = requests.Session()
    server.terminate()
    started = time.monotonic()
    while session.get(f"{server.base_url}/healthz", timeout=5).status_code != 503:
        assert time.monotonic() - started < 1, "health did not turn 503 at once"
    answers = []
    while time.monotonic() - started < drain - 0.5:
        answers.append(session.get(f"{server.base_url}/", timeout=5).status_code)
        time.sleep(0.05)
    assert answers and set(answers) == {200}
    assert session.get(f"{server.base_url}/healthz", timeout=5).json() == {"status": "draining"}
    assert server.wait_exit(drain + STOP_BUDGET_SECONDS) == 0
    assert time.monotonic() - started >= drain


def test_gunicorn_gives_up_before_nginx(launch) -> None:
    # A sync worker past TIMEOUT is stopped by Gunicorn, while Nginx waits
    # TIMEOUT + 5 s: the client gets a quick JSON 500, not a 504 much later.
    server = launch(APP_MODULE="slow:app", WORKER_CLASS="sync", TIMEOUT="1")
    started = time.monotonic()
    response = requests.get(f"{server.base_url}/slow?seconds=8", timeout=20)
    assert_json_error(response, 500, gunicorn=True)
    assert time.monotonic() - started < 5
    assert requests.get(f"{server.base_url}/", timeout=10).status_code == 200


def test_the_apps_own_errors_pass_untouched(launch) -> None:
    # Nginx answers its own errors as JSON but never rewrites the app's.
    server = launch(APP_MODULE="slow:app")
    response = requests.post(f"{server.base_url}/reject", timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "name is required", "field": "name"}


def test_nginx_answers_json_502_when_a_worker_dies(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    assert_json_error(requests.get(f"{server.base_url}/crash", timeout=20), 502)
    assert requests.get(f"{server.base_url}/", timeout=10).status_code == 200  # replaced


def test_gunicorn_cmd_args_still_apply(launch) -> None:
    server = launch(GUNICORN_CMD_ARGS="--workers 1")
    assert server.logs().count("Booting worker with pid") == 1


def test_nginx_answers_json_504_when_the_app_is_too_slow(launch) -> None:
    server = launch(APP_MODULE="slow:app", TIMEOUT="1")  # gthread: Nginx's 6 s apply
    response = requests.get(f"{server.base_url}/slow?seconds=9", timeout=20)
    assert_json_error(response, 504)


def test_trusted_proxy_is_believed(launch) -> None:
    # Loopback and the private ranges a container engine's gateway lives in.
    server = launch(TRUSTED_PROXIES="127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16")
    # The nearest untrusted address is the client; what it claims beyond is not.
    response = requests.get(f"{server.base_url}/whoami", timeout=10, headers={
        "X-Forwarded-For": "198.51.100.1, 203.0.113.9", "X-Forwarded-Proto": "https"})
    assert response.json() == {"client": "203.0.113.9", "scheme": "https"}


def test_access_log_can_be_off(launch) -> None:
    server = launch(ACCESS_LOG="off")
    request_id = requests.get(f"{server.base_url}/", timeout=10).headers["X-Request-ID"]
    time.sleep(0.5)
    assert request_id not in server.logs()
    assert access_log(server) == {}


def test_max_body_size_is_a_setting(launch) -> None:
    server = launch(MAX_BODY_SIZE="1k")
    assert_json_error(requests.post(f"{server.base_url}/", data=b"x" * 1025, timeout=10), 413)
    # Within the limit the request reaches the app (which only allows GET here).
    assert_json_error(requests.post(f"{server.base_url}/", data=b"x" * 1000, timeout=10), 405)


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> None:
    yield
    assert threading.active_count() < 20
