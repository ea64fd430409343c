"""Start, stop, drain, fail fast and settings: each on the stack layer and the image layer."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, access_log, assert_json_error
from harness.load import SteadyClient
from harness.metrics import scrape
from harness.paths import EXAMPLE_APP
from harness.procfs import gunicorn_workers
from stack.settings import defaults, load

APP = EXAMPLE_APP.read_text()


@pytest.mark.engine  # through the engine: its signals, ports or logs
@pytest.mark.parametrize(("name", "value", "accepted"), [
    ("WEB_CONCURRENCY", "abc", "a whole number from 1 to 256"),
    ("TIMEOUT", "-1", "a whole number of seconds"),
    ("WORKER_CLASS", "eventlet", "gthread or sync"),
    ("TRUSTED_PROXIES", "10.0.0.300", "IP addresses or CIDR networks"),
    ("MAX_BODY_SIZE", "lots", "a size from 1 to 1g"),
    ("ACCESS_LOG", "maybe", "on or off"),
    ("APP_MODULE", "app", "module:callable"),
    ("STATIC_PATH", "/proc", "not / or a system directory"),
    # What the stack relies on, GUNICORN_CMD_ARGS cannot undo.
    ("GUNICORN_CMD_ARGS", "--bind 0.0.0.0:8000", "--bind is refused"),
    ("GUNICORN_CMD_ARGS", "--forwarded-allow-ips *", "--forwarded-allow-ips is refused"),
    ("GUNICORN_CMD_ARGS", "--user 0 --workers 2", "--user is refused"),
    ("GUNICORN_CMD_ARGS", "--chdir /tmp", "--chdir is refused"),
    ("GUNICORN_CMD_ARGS", "--workers", "expected one argument"),
])
def test_bad_setting_stops_the_start_with_one_line(launch, name: str, value: str,
                                                   accepted: str) -> None:
    server = launch(wait=False, **{name: value})
    assert server.wait_exit(30) == 78
    lines = server.logs().strip().splitlines()
    assert len(lines) == 1, lines
    assert name in lines[0] and repr(value) in lines[0] and accepted in lines[0]


# A prestart.py that says it started, then takes a minute.
SLOW_PRESTART = "import time\nprint('prestart: sleeping', flush=True)\ntime.sleep(60)\n"
PROMPT_EXIT_SECONDS = 2  # the most a stop during the start may take


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_a_stop_during_prestart_ends_the_start_at_once(launch) -> None:
    server = launch(wait=False, app={"app.py": APP, "prestart.py": SLOW_PRESTART})
    deadline = time.monotonic() + 30
    while "prestart: sleeping" not in server.logs():
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.1)
    sent = time.time()
    server.terminate()
    assert server.wait_exit(PROMPT_EXIT_SECONDS + 5) == 128 + signal.SIGTERM
    assert server.exited_at() - sent < PROMPT_EXIT_SECONDS
    assert "stopped by SIGTERM during the start" in server.logs()
    assert "Booting worker" not in server.logs()


def test_app_that_cannot_import_fails_fast(launch) -> None:
    server = launch(wait=False, APP_MODULE="broken:app")
    assert server.wait_exit(30) == 1  # not up and answering 502 for ever
    logs = server.logs()
    assert "KeyError: 'BROKEN_APP_DATABASE_URL'" in logs
    assert re.search(r"gunicorn (could not start|crashed \d+ times in 60 s); stopping", logs)


@pytest.mark.engine  # through the engine: its signals, ports or logs
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


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_graceful_stop_finishes_in_flight_requests(launch) -> None:
    env = {"APP_MODULE": "slow:app"}
    ceiling = load(env).stop_ceiling
    server = launch(**env)
    with ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(requests.get, f"{server.base_url}/slow?seconds=2", timeout=20)
                     for _ in range(4)]
        time.sleep(0.5)
        started = time.monotonic()
        server.terminate()
        assert [f.result().status_code for f in in_flight] == [200] * 4
        assert server.wait_exit(ceiling) == 0
    assert time.monotonic() - started < ceiling


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_a_request_as_long_as_the_grace_finishes_within_dockers_stop(launch) -> None:
    """With the defaults, a request in flight at the stop that needs just under
    GRACEFUL_TIMEOUT is answered whole, and the stop ends with 0 before Docker's
    (and Compose's) SIGKILL, within the stack's own ceiling."""
    settings = defaults()
    assert settings.stop_ceiling < STOP_BUDGET_SECONDS  # what the docs promise
    server = launch(APP_MODULE="slow:app")
    seconds = settings.graceful_timeout - 0.5
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(requests.get, f"{server.base_url}/slow?seconds={seconds}",
                                timeout=30)
        time.sleep(0.3)  # it is in the app now
        started = time.monotonic()
        code = server.stop(STOP_BUDGET_SECONDS + 5)  # a container: the engine's default grace
        elapsed = time.monotonic() - started
        answer = in_flight.result()
    assert answer.status_code == 200 and answer.json() == {"slept": seconds}
    assert code == 0
    assert elapsed < min(STOP_BUDGET_SECONDS, settings.stop_ceiling), elapsed


@pytest.mark.engine  # through the engine: its signals, ports or logs
def test_drain_turns_health_503_while_serving(launch) -> None:
    drain = 3
    ceiling = load({"DRAIN_SECONDS": str(drain)}).stop_ceiling
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
    assert server.wait_exit(ceiling) == 0
    assert drain <= time.monotonic() - started < ceiling


@pytest.mark.parametrize("worker_class", ["gthread", "sync"])
def test_the_worker_gives_up_at_timeout_before_nginx(launch, worker_class: str) -> None:
    # A request past TIMEOUT is ended by its worker, while Nginx waits TIMEOUT
    # + 5 s: the client gets the JSON 504 a second or so after TIMEOUT.
    timeout = 2
    server = launch(APP_MODULE="slow:app", WORKER_CLASS=worker_class, TIMEOUT=str(timeout))
    started = time.monotonic()
    response = requests.get(f"{server.base_url}/slow?seconds=60", timeout=30,
                            headers={"X-Request-ID": f"too-slow-{worker_class}"})
    assert_json_error(response, 504)
    # Found within a second of TIMEOUT, long before Nginx's own wait would end.
    nginx_wait = load({"TIMEOUT": str(timeout)}).proxy_timeout
    assert timeout <= time.monotonic() - started < timeout + 2.5 < nginx_wait
    assert requests.get(f"{server.base_url}/", timeout=10).status_code == 200
    assert re.search(rf"request GET /slow\?seconds=60 \(route /slow, request id "
                     rf"too-slow-{worker_class}\) ran past TIMEOUT={timeout} s", server.logs())


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


def test_requests_that_never_end_cannot_starve_the_workers(launch) -> None:
    """More never-ending requests than threads in all workers: each gets its 504
    (or 502 if its worker went first), the workers holding them are replaced,
    and then every thread serves again; a steady client meanwhile loses nothing."""
    timeout, workers, threads = 2, 2, 2
    server = launch(APP_MODULE="slow:app", TIMEOUT=str(timeout), WEB_CONCURRENCY=str(workers),
                    THREADS=str(threads))
    hung = workers * threads + 2
    with SteadyClient(server.base_url, clients=1, interval=0.05, timeout=30) as steady, \
            ThreadPoolExecutor(hung) as pool:
        answers = list(pool.map(lambda _: requests.get(
            f"{server.base_url}/slow?seconds=3600", timeout=60), range(hung)))
    for answer in answers:
        assert answer.status_code in (502, 504), answer.text
        assert_json_error(answer, answer.status_code)
    outcomes = steady.snapshot()
    assert outcomes and {outcome.status for outcome in outcomes} == {200}
    # Full concurrency again: as many half-second requests as threads, side by side.
    with ThreadPoolExecutor(workers * threads) as pool:
        started = time.monotonic()
        again = list(pool.map(lambda _: requests.get(
            f"{server.base_url}/slow?seconds=0.5", timeout=30), range(workers * threads)))
    assert [answer.status_code for answer in again] == [200] * workers * threads
    assert time.monotonic() - started < 1.5  # all at once, not two rounds
    assert server.logs().count(f"ran past TIMEOUT={timeout} s") >= workers * threads
    # Every worker held a hung request, and each replacement is counted as such.
    replaced = scrape(server.metrics_url).value("gunicorn_worker_replacements_total",
                                                cause="timeout")
    assert replaced >= workers


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


def test_the_workers_share_a_steady_keep_alive_load(launch) -> None:
    """No worker hoards Nginx's kept-alive connections: under a steady load the
    busiest worker answers at most twice what the idlest does."""
    workers = 3
    server = launch(WEB_CONCURRENCY=str(workers))
    path = f"/?balance={time.monotonic_ns()}"
    with SteadyClient(server.base_url, clients=16, path=path, timeout=10) as load:
        time.sleep(5)
    assert not load.failures()
    ids = {outcome.path for outcome in load.snapshot()}
    assert ids == {path}
    lines = [line for line in access_log(server).values() if line["uri"] == path]
    shares = Counter(line["worker"] for line in lines)
    assert len(shares) == workers, shares
    assert max(shares.values()) <= 2 * min(shares.values()), shares


def test_a_recycled_worker_is_replaced_as_it_stops_taking_work(launch) -> None:
    """A worker past MAX_REQUESTS still finishes what it has in flight (or lingers
    on its kept-alive connections): its replacement is forked as it retires,
    not once it has exited, and the master is back to WEB_CONCURRENCY after."""
    server = launch(APP_MODULE="slow:app", WEB_CONCURRENCY="1", MAX_REQUESTS="20")
    [first] = gunicorn_workers(server)
    with ThreadPoolExecutor(1) as pool, requests.Session() as session:
        slow = pool.submit(requests.get, f"{server.base_url}/slow?seconds=5", timeout=30)
        for _ in range(25):  # past MAX_REQUESTS and its jitter, at most
            if len(workers := set(gunicorn_workers(server))) > 1:
                break
            assert session.get(server.base_url, timeout=30).status_code == 200
        assert not slow.done(), "the replacement came only once the old worker had gone"
        assert first in workers and len(workers) == 2, workers
        assert slow.result().status_code == 200
    [replacement] = workers - {first}
    deadline = time.monotonic() + 10
    while (workers := set(gunicorn_workers(server))) != {replacement}:
        assert time.monotonic() < deadline, workers
        time.sleep(0.05)
