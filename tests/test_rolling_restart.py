"""Rolling restart behind a real HAProxy: zero failed requests, and the real client address.

Two hardened replicas of the image run with compose.yaml's stop settings behind
HAProxy, started as a local process with deploy/haproxy/haproxy.cfg (only its
server-template line is swapped for the replicas' loopback ports). Steady
clients go through HAProxy while each replica in turn gets SIGTERM, drains,
exits 0 and is replaced by a new container, as `docker compose up` or a
Kubernetes rollout does.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from harness.checks import access_log
from harness.containers import Container
from harness.images import HARDENED
from harness.local import LocalServer
from harness.paths import ROOT
from harness.server import wait_until_up

# Hardened replicas, as compose.yaml runs them.
pytestmark = pytest.mark.hardened

HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
COMPOSE = ROOT / "compose.yaml"
REPLICAS = 2
BACKEND = "app"
SERVER_TEMPLATE = re.compile(r"^\s*server-template\s+app\s.*$", re.M)
# Supervisord's ceiling after SIGTERM (see the deployment guide) and a start.
STOP_BUDGET = 30
UP_BUDGET = 60
# Every client loop is bounded in count and time.
MAX_REQUESTS = 20_000
MAX_SECONDS = 150
PAUSE = 0.005
# A run of about 25 s gives 1,500 to 3,000 fast answers per client on a 2-CPU machine.
MIN_OK = {"keep-alive": 400, "new connection": 200, "in flight": 15}
SLOW_SECONDS = 2
CLIENT = "127.0.0.1"
SPOOFED = "203.0.113.9"  # TEST-NET-3: an address no test machine has


def compose_app_env() -> dict[str, str]:
    """The app service's environment in compose.yaml: the test runs with the same stop settings."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["app"]
    env = service["environment"]
    return {key: str(env[key]) for key in ("DRAIN_SECONDS", "GRACEFUL_TIMEOUT")}


@dataclass
class HAProxy(LocalServer):
    """HAProxy as a local process, driven through its runtime API on a UNIX socket."""

    work: Path
    servers: dict[str, int]

    @property
    def admin(self) -> Path:
        return self.work / "admin.sock"

    def start(self) -> HAProxy:
        text = HAPROXY_CFG.read_text()
        assert len(SERVER_TEMPLATE.findall(text)) == 1, "haproxy.cfg has no single server-template"
        lines = "\n".join(f"    server {name} 127.0.0.1:{port}"
                          for name, port in self.servers.items())
        (self.work / "haproxy.cfg").write_text(SERVER_TEMPLATE.sub(lines, text))
        # The runtime API, for the test only: a second global section adds it.
        (self.work / "admin.cfg").write_text(
            f"global\n    stats socket {self.admin} mode 600 level admin\n")
        self.process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.work / "haproxy.cfg"),
             "-f", str(self.work / "admin.cfg")],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LISTEN": f"127.0.0.1:{self.port}"},
            stdout=(self.work / "haproxy.log").open("wb"), stderr=subprocess.STDOUT,
        )
        self.wait(lambda: all(self.status(name) == "UP" for name in self.servers), UP_BUDGET,
                  "every replica UP in HAProxy")
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(5)
            admin.connect(str(self.admin))
            admin.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend: one row per server and one for the backend itself."""
        text = self.command("show stat").removeprefix("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == BACKEND}

    def status(self, server: str) -> str:
        try:
            return self.stats()[server]["status"]
        except OSError:  # not listening on its socket yet
            return ""

    def wait(self, condition: Callable[[], bool], seconds: float, what: str) -> float:
        """Poll until condition() holds; return how long it took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            assert self.process is not None and self.process.poll() is None, self.logs()
            if condition():
                return time.monotonic() - started
            time.sleep(0.05)
        pytest.fail(f"not {what} after {seconds} s:\n{self.logs()}")

    def logs(self) -> str:
        return (self.work / "haproxy.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Client:
    """A steady, bounded client through the balancer: counts every answer and every error."""

    name: str
    url: str
    check: Callable[[requests.Response], bool]
    keep_alive: bool = True
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        session = requests.Session()
        # Without keep-alive every request opens a new connection to HAProxy.
        headers = {} if self.keep_alive else {"Connection": "close"}
        deadline = time.monotonic() + MAX_SECONDS
        for _ in range(MAX_REQUESTS):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                response = session.get(self.url, headers=headers, timeout=10)
                if response.status_code == 200 and self.check(response):
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text[:120]!r}")
            except requests.RequestException as error:
                self.failures.append(repr(error))
            time.sleep(PAUSE)
        session.close()


def slow_answers_after(container: Container, since: float) -> int:
    """/slow requests the container answered 200 at least a second after `since` (epoch)."""
    return sum(1 for line in access_log(container).values()
               if line["uri"].startswith("/slow") and line["status"] == 200
               and datetime.fromisoformat(line["time"]).timestamp() >= since + 1)


@pytest.fixture(scope="module")
def proxy_address(run_container) -> str:  # type: ignore[no-untyped-def]
    """Where a connection to a published port comes from, as the app sees it.

    Asked, not guessed: the engine's port forwarding decides (Podman's
    netavark and Docker's proxy both connect from the bridge's gateway).
    """
    probe = run_container(args=HARDENED)
    seen = requests.get(f"{probe.base_url}/whoami", timeout=5).json()["client"]
    probe.stop()
    # Were it loopback, HAProxy's own entry in X-Forwarded-For would be trusted
    # too and the test could not tell a spoofed address from the real one.
    assert not seen.startswith("127."), f"published ports arrive from {seen}"
    return seen


@pytest.fixture(scope="module")
def balanced(run_container, proxy_address: str, tmp_path_factory: pytest.TempPathFactory,
             require: Callable[[object, str], None],
             ) -> Iterator[tuple[HAProxy, dict[str, Container], Callable[[], Container]]]:
    """HAProxy and its replicas: the address test reads them, the restart test replaces them."""
    require(shutil.which("haproxy"), "haproxy is not installed (apt-get install haproxy)")
    env = {**compose_app_env(), "TRUSTED_PROXIES": f"{proxy_address}/32",
           "APP_MODULE": "slow:app"}  # the template's routes plus /slow

    started: list[Container] = []

    def replica() -> Container:
        started.append(run_container(env=env, args=HARDENED, wait=False))
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
        # No drain at the end: the session's clean-up would wait it out for each.
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
    drain = int(compose_app_env()["DRAIN_SECONDS"])
    assert drain > 0, "compose.yaml must drain, or the balancer cannot take a replica out first"
    clients = [
        Client("keep-alive", f"{haproxy.base_url}/",
               lambda r: r.json() == {"msg": "Success!"}),
        Client("new connection", f"{haproxy.base_url}/",
               lambda r: r.json() == {"msg": "Success!"}, keep_alive=False),
        # Three slow requests always in flight: some straddle the SIGTERMs.
        *[Client("in flight", f"{haproxy.base_url}/slow?seconds={SLOW_SECONDS}",
                 lambda r: r.json() == {"slept": SLOW_SECONDS}) for _ in range(3)],
    ]
    stop = threading.Event()
    stopped: list[tuple[Container, float]] = []
    replacements: list[Container] = []
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)  # traffic on every replica before the first goes
        for name, old in replicas.items():
            stopped.append((old, time.time()))
            old.terminate()
            # /healthz turned 503 at once: HAProxy takes the replica out while it
            # still serves (within DRAIN_SECONDS), before Nginx stops accepting.
            took = haproxy.wait(lambda n=name: haproxy.status(n) == "DOWN", drain,
                                f"{name} DOWN within DRAIN_SECONDS")
            assert old.running(), f"{name} exited before HAProxy took it out ({took:.1f} s)"
            assert old.wait_exit(drain + STOP_BUDGET) == 0, old.logs()
            new = replica()
            replacements.append(new)
            haproxy.command(f"set server {BACKEND}/{name} addr 127.0.0.1 port {new.port}")
            haproxy.wait(lambda n=name: haproxy.status(n) == "UP", UP_BUDGET, f"{name} UP again")
        time.sleep(2)  # traffic on the new replicas too
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    answers = {name: sum(c.ok for c in clients if c.name == name) for name in MIN_OK}
    straddled = sum(slow_answers_after(old, since) for old, since in stopped)
    print(answers, f"{straddled} slow answers after SIGTERM")  # shown with -rP
    for client in clients:
        assert client.failures == [], f"{client.name}: {client.failures[:10]}"
    for name, minimum in MIN_OK.items():
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
