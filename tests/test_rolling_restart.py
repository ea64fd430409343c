"""Rolling restart behind a real HAProxy: zero failed requests, and the real client address.

Two hardened replicas of the image run with compose.yaml's stop settings behind
HAProxy, started as a local process with deploy/haproxy/haproxy.cfg (only its
server-template line is swapped for the replicas' loopback ports). Steady
clients go through HAProxy while each replica in turn gets SIGTERM, drains,
exits 0 and is replaced by a new container, as `docker compose up` or a
Kubernetes rollout does.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
import requests

from harness.checks import access_log
from harness.containers import Container
from harness.deployfiles import app_settings, compose
from harness.haproxy import UP_SECONDS, HAProxy
from harness.images import HARDENED
from harness.load import SteadyClient
from harness.server import wait_until_up

# Hardened replicas, as compose.yaml runs them.
pytestmark = pytest.mark.hardened

REPLICAS = 2
PAUSE = 0.005  # between a client's requests
# A run of about 25 s gives 1,500 to 3,000 fast answers per client on a 2-CPU machine.
MIN_OK = {"keep-alive": 400, "new connection": 200, "in flight": 15}
SLOW_SECONDS = 2
CLIENT = "127.0.0.1"
SPOOFED = "203.0.113.9"  # TEST-NET-3: an address no test machine has


def compose_app_env() -> dict[str, str]:
    """The app service's stop settings in compose.yaml: the test runs with the same."""
    env = compose()["services"]["app"]["environment"]
    return {key: str(env[key]) for key in ("DRAIN_SECONDS", "GRACEFUL_TIMEOUT")}


def slow_answers_after(container: Container, since: float) -> int:
    """/slow requests the container answered 200 at least a second after `since` (epoch)."""
    return sum(1 for line in access_log(container).values()
               if line["uri"].startswith("/slow") and line["status"] == 200
               and datetime.fromisoformat(line["time"]).timestamp() >= since + 1)


@pytest.fixture(scope="module")
def proxy_address(run_image_for_module, image: str) -> str:  # type: ignore[no-untyped-def]
    """Where a connection to a published port comes from, as the app sees it.

    Asked, not guessed: the engine's port forwarding decides (Podman's
    netavark and Docker's proxy both connect from the bridge's gateway).
    """
    probe = run_image_for_module(image, args=HARDENED)
    seen = requests.get(f"{probe.base_url}/whoami", timeout=5).json()["client"]
    probe.stop()
    # Were it loopback, HAProxy's own entry in X-Forwarded-For would be trusted
    # too and the test could not tell a spoofed address from the real one.
    assert not seen.startswith("127."), f"published ports arrive from {seen}"
    return seen


@pytest.fixture(scope="module")
def balanced(run_image_for_module, image: str, proxy_address: str,  # type: ignore[no-untyped-def]
             tmp_path_factory: pytest.TempPathFactory,
             require: Callable[[object, str], None],
             ) -> Iterator[tuple[HAProxy, dict[str, Container], Callable[[], Container]]]:
    """HAProxy and its replicas: the address test reads them, the restart test replaces them."""
    require(shutil.which("haproxy"), "haproxy is not installed (apt-get install haproxy)")
    env = {**compose_app_env(), "TRUSTED_PROXIES": f"{proxy_address}/32",
           "APP_MODULE": "slow:app"}  # the template's routes plus /slow

    started: list[Container] = []

    def replica() -> Container:
        started.append(run_image_for_module(image, env=env, args=HARDENED, wait=False))
        return started[-1]

    replicas = {f"app{i}": replica() for i in range(1, REPLICAS + 1)}
    for container in replicas.values():
        wait_until_up(container.base_url, container.running, container.logs)
    ports = {name: container.port for name, container in replicas.items()}
    haproxy = HAProxy(tmp_path_factory.mktemp("haproxy"), ports)
    try:
        yield haproxy.start(), replicas, replica
    finally:
        haproxy.stop()
        # No drain at the end: the module's clean-up would wait it out for each.
        for container in started:
            container.engine("kill", container.id, check=False)


def test_client_address_through_the_balancer(balanced, proxy_address: str) -> None:
    haproxy, replicas, _ = balanced
    whoami = f"{haproxy.base_url}/whoami"
    assert requests.get(whoami, timeout=5).json() == {"client": CLIENT, "scheme": "http"}
    # A client's own X-Forwarded-For and -Proto are not believed: HAProxy appends
    # the address it saw and sets the scheme, and the app trusts HAProxy only.
    spoofed = requests.get(whoami, timeout=5, headers={"X-Forwarded-For": SPOOFED,
                                                       "X-Forwarded-Proto": "https"})
    assert spoofed.json() == {"client": CLIENT, "scheme": "http"}
    # The control: from the trusted peer itself the header is believed, so the
    # answer above came from HAProxy's entry, not from ignoring the header.
    direct = next(iter(replicas.values())).base_url
    assert requests.get(f"{direct}/whoami", timeout=5,
                        headers={"X-Forwarded-For": SPOOFED}).json()["client"] == SPOOFED
    assert requests.get(f"{direct}/whoami", timeout=5).json()["client"] == proxy_address


def test_rolling_restart_loses_no_request(balanced) -> None:
    haproxy, replicas, replica = balanced
    settings = app_settings(compose_app_env())
    drain = settings.drain_seconds
    assert drain > 0, "compose.yaml must drain, or the balancer cannot take a replica out first"
    def success(body: bytes) -> bool:
        return json.loads(body) == {"msg": "Success!"}

    clients = {
        "keep-alive": SteadyClient(haproxy.base_url, clients=1, interval=PAUSE, expect=success),
        "new connection": SteadyClient(haproxy.base_url, clients=1, interval=PAUSE,
                                       new_connections=True, expect=success),
        # Three slow requests always in flight: some straddle the SIGTERMs.
        "in flight": SteadyClient(haproxy.base_url, clients=3,
                                  path=f"/slow?seconds={SLOW_SECONDS}"),
    }
    stopped: list[tuple[Container, float]] = []
    replacements: list[Container] = []
    with contextlib.ExitStack() as running:
        for client in clients.values():
            running.enter_context(client)
        time.sleep(2)  # traffic on every replica before the first goes
        for name, old in replicas.items():
            stopped.append((old, time.time()))
            old.terminate()
            # /healthz turned 503 at once: HAProxy takes the replica out while it
            # still serves (within DRAIN_SECONDS), before Nginx stops accepting.
            took = haproxy.wait(lambda n=name: haproxy.status(n) == "DOWN", drain,
                                f"{name} DOWN within DRAIN_SECONDS")
            assert old.running(), f"{name} exited before HAProxy took it out ({took:.1f} s)"
            assert old.wait_exit(settings.stop_ceiling) == 0, old.logs()
            new = replica()
            replacements.append(new)
            haproxy.move(name, new.port)
            haproxy.wait(lambda n=name: haproxy.status(n) == "UP", UP_SECONDS, f"{name} UP again")
        time.sleep(2)  # traffic on the new replicas too
    answers = {name: len(client.snapshot()) for name, client in clients.items()}
    straddled = sum(slow_answers_after(old, since) for old, since in stopped)
    print(answers, f"{straddled} slow answers after SIGTERM")  # shown with -rP
    for name, client in clients.items():
        assert client.failures() == [], f"{name}: {client.failures()[:10]}"
    for name, minimum in MIN_OK.items():  # enough traffic for the zero to mean something
        assert answers[name] >= minimum, f"{name}: only {answers[name]} answers"
    # The interesting case happened: slow requests through HAProxy were still
    # answered by a replica after its SIGTERM (Nginx logs each at its end).
    assert straddled > 0
    # Nothing was hidden by HAProxy retrying elsewhere: no connection error,
    # no broken response, no retry, no redispatch, no 5xx.
    stats = haproxy.stats()
    counters = {key: int(stats["BACKEND"][key] or 0)
                for key in ("econ", "eresp", "wretr", "wredis", "hrsp_5xx")}
    assert counters == dict.fromkeys(counters, 0), counters
    # And the replacements took their share.
    for new in replacements:
        assert access_log(new), f"no request reached the replacement {new.id[:12]}"
