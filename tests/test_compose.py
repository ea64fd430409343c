"""compose.yaml brought up from the file, as a user does, by the engine's own Compose.

The replicas and the balancer come up healthy; the contract and the client's
address hold through the published port; scaled to three replicas, each is
stopped in turn (it drains and exits 0) and brought back by Compose while a
steady client sends requests through the balancer, and none fails.
Then `down --volumes`. The app image is the session's build (FLASK_STACK_IMAGE),
so Compose builds only the balancer.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from harness.checks import assert_contract, assert_json_error, wait_serving
from harness.compose import ComposeProject, compose_command
from harness.containers import Container
from harness.deployfiles import app_settings, compose, seconds
from harness.engine import Engine
from harness.load import SteadyClient

pytestmark = pytest.mark.compose

PROJECT = "flask-stack-test"  # not a user's project of the same directory
SCALED = 3
CLIENT = "203.0.113.9"  # TEST-NET-3: an address no test machine has, sent as a spoof
MIN_ANSWERS = 500  # a replacement takes about 15 s; the client sends about 50 requests/s


def published_port() -> int:
    (mapping,) = compose()["services"]["balancer"]["ports"]
    host_port, _, _ = str(mapping).partition(":")
    return int(host_port)


@pytest.fixture(scope="module")
def project(engine: Engine, image: str, require: Callable[[object, str], None],
            ) -> Iterator[ComposeProject]:
    command = compose_command(engine)
    require(command, f"no Compose for {engine.command} (Docker: the compose plugin, Compose v2,"
                     " as .ci/setup-host installs it; Podman: podman-compose from PyPI)")
    assert command
    project = ComposeProject(engine, command, PROJECT, {"FLASK_STACK_IMAGE": image})
    project.down()  # whatever an interrupted run left
    try:
        project("up", "--detach")
        yield project
    finally:
        project.down()


@pytest.fixture(scope="module")
def balancer(project: ComposeProject) -> Container:
    """The balancer, once it and every replica compose.yaml asks for are healthy."""
    project.wait_healthy("app", compose()["services"]["app"]["deploy"]["replicas"])
    (healthy,) = project.wait_healthy("balancer", 1, port=published_port())
    return healthy


def test_contract_through_the_balancer(balancer: Container) -> None:
    assert_contract(requests.get(f"{balancer.base_url}/", timeout=10))
    assert_json_error(requests.get(f"{balancer.base_url}/nope", timeout=10), 404)


def test_the_app_sees_the_real_client(balancer: Container) -> None:
    """A client on loopback reaches the published port through the engine's proxy or
    port mapping, so HAProxy sees it come from the network's gateway: that, and not
    HAProxy's own address (the app's peer), is the client the app must see."""
    (network,) = compose()["networks"].values()
    (ipam,) = network["ipam"]["config"]
    gateway = ipam["gateway"]
    trusted = app_settings(compose()["services"]["app"]["environment"]).trusted_proxies
    assert not any(ipaddress.ip_address(gateway) in ipaddress.ip_network(net)
                   for net in trusted)
    whoami = f"{balancer.base_url}/whoami"
    assert requests.get(whoami, timeout=10).json() == {"client": gateway, "scheme": "http"}
    # What the client claims is not believed: HAProxy appends what it saw.
    spoofed = requests.get(whoami, timeout=10, headers={"X-Forwarded-For": CLIENT,
                                                        "X-Forwarded-Proto": "https"})
    assert spoofed.json() == {"client": gateway, "scheme": "http"}


def test_each_replica_restarts_in_turn_without_a_failed_request(
        project: ComposeProject, balancer: Container) -> None:
    scale = ("up", "--detach", "--no-deps", "--no-recreate", "--scale", f"app={SCALED}", "app")
    project(*scale)
    replicas = project.wait_healthy("app", SCALED)
    grace = int(seconds(compose()["services"]["app"]["stop_grace_period"]))
    with SteadyClient(balancer.base_url, clients=2, interval=0.02) as load:
        for replica in replicas:
            wait_serving(replica)
        for replica in replicas:
            started = replica.inspect("{{.State.StartedAt}}")
            # SIGTERM: /healthz turns 503, HAProxy takes the replica out while it
            # still serves, then Nginx and Gunicorn finish and it exits 0.
            assert replica.stop(timeout=grace + 5, grace=grace) == 0, replica.logs()
            # Compose brings the service back to its scale: it starts the replica
            # again (podman-compose makes the balancer require the first replica,
            # so a replica cannot be removed and made anew while the balancer runs).
            project(*scale)
            back = time.time()
            assert replica.inspect("{{.State.StartedAt}}") != started
            replica.wait_healthy()
            wait_serving(replica, since=back)
    outcomes = load.snapshot()
    print(f"{len(outcomes)} requests through the balancer")  # shown with -rP
    failed = [(o.status, o.error) for o in outcomes if o.status != 200]
    assert failed == [], f"{len(failed)} of {len(outcomes)} failed: {failed[:10]}"
    assert len(outcomes) >= MIN_ANSWERS
    assert {c.id for c in project.containers("app")} == {c.id for c in replicas}
