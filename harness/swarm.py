"""A one-node Docker swarm of its own, beside the machine's daemon, and a stack on it.

The swarm's dockerd runs in a network namespace this module makes (the recipe
and its traps are in ../shared/BUILD-MACHINE.md): `nsenter --net`, never `ip
netns exec` (dockerd then finds no devices cgroup), and never in the machine's
own namespace (it would delete the machine daemon's docker0). Everything the
swarm publishes is on that namespace's loopback, so the test's requests and
load run there too: `python -m harness.swarm get|load ...` under nsenter.

The daemon gets the seccomp profile and no-new-privileges as its defaults
(`--seccomp-profile`, `--no-new-privileges`), as a node's daemon.json gives
them: Swarm services take neither themselves (docs/deployment.md).

Teardown always runs, in order, each step even when one before it failed (its
failure is raised after): the swarm left, the daemon stopped by its pid
(SIGKILL after DOCKERD_STOP_SECONDS), whatever it left killed (its cgroup
parent's processes and the namespace's), its mounts undone, the namespace
deleted and the directory removed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

from harness.containers import Container
from harness.engine import Engine, EngineError
from harness.load import Outcome, SteadyClient
from harness.paths import ROOT

DOCKERD_START_SECONDS = 60
DOCKERD_STOP_SECONDS = 60
# Where the daemon keeps its containers' cgroups (cgroupfs), so that whatever a
# killed daemon leaves running is found by that name alone.
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The label Swarm puts on each task's container.
SERVICE_LABEL = "com.docker.swarm.service.name"
LOAD_READY = "ready"  # the in-namespace load's first line, once a request was answered
POLL = 0.5


class SwarmError(RuntimeError):
    """The swarm or its stack did not reach the state asked for in time."""


def run(*command: str, check: bool = True, timeout: float = 60) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise SwarmError(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout


@dataclass
class Swarm:
    namespace: str
    directory: Path
    docker: Engine  # the docker CLI, talking to this swarm's daemon
    process: subprocess.Popen[bytes] | None = None

    @property
    def nsenter(self) -> tuple[str, ...]:
        return ("nsenter", f"--net=/run/netns/{self.namespace}")

    @property
    def cgroup_parent(self) -> str:
        return self.namespace

    @property
    def log(self) -> Path:
        return self.directory / "dockerd.log"

    def daemon_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def load_images(self, source: Engine, *images: str) -> None:
        """`SOURCE save IMAGES | docker load` into the swarm's daemon: no registry here."""
        save = subprocess.Popen([source.command, "save", *images], stdout=subprocess.PIPE,
                                env=source.environ())
        assert save.stdout
        try:
            loaded = subprocess.run([self.docker.command, "load"], stdin=save.stdout,
                                    capture_output=True, text=True, timeout=600,
                                    env=self.docker.environ())
        finally:
            save.stdout.close()
            saved = save.wait(600)
        if saved != 0 or loaded.returncode != 0:
            raise SwarmError(f"save | load of {images} failed ({saved}): {loaded.stderr}")

    def get(self, url: str, timeout: float = 10) -> requests.Response:
        """GET `url` from inside the namespace, as a requests Response."""
        result = subprocess.run([*self.nsenter, sys.executable, "-m", "harness.swarm", "get",
                                 url, "--timeout", str(timeout)], cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout + 30)
        if result.returncode != 0:
            raise SwarmError(f"GET {url} in {self.namespace} failed:\n{result.stderr}")
        answer = json.loads(result.stdout)
        response = requests.Response()
        response.status_code = answer["status"]
        response.headers = CaseInsensitiveDict(answer["headers"])
        response._content = base64.b64decode(answer["body"])
        response.url = url
        return response

    @contextmanager
    def load(self, url: str, clients: int = 2, interval: float = 0.02,
             seconds: float = 300) -> Iterator[NamespaceLoad]:
        """Steady clients in the namespace, from once the first request is answered
        until the block ends (at most `seconds`); `.outcomes` then holds every request."""
        load = NamespaceLoad(self, url, clients, interval, seconds)
        load.start()
        try:
            yield load
        finally:
            load.stop()


@dataclass
class NamespaceLoad:
    """harness.load.SteadyClient in a process of its own inside the swarm's namespace;
    its outcomes come back as JSON when its stdin closes."""

    swarm: Swarm
    url: str
    clients: int
    interval: float
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*self.swarm.nsenter, sys.executable, "-m", "harness.swarm", "load", self.url,
             "--clients", str(self.clients), "--interval", str(self.interval),
             "--seconds", str(self.seconds)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        assert self.process.stdout
        # The first line, once a request was answered; bounded by the load's own timeout.
        ready = self.process.stdout.readline().strip()
        if ready != LOAD_READY:
            self.process.kill()
            raise SwarmError(f"the load did not start: {ready}{self.process.stderr.read()}")

    def stop(self) -> None:
        assert self.process
        try:
            # Closing its stdin is the signal to stop.
            out, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        if self.process.returncode != 0:
            raise SwarmError(f"the load failed ({self.process.returncode}): {err}")
        self.outcomes = [Outcome(*fields) for fields in json.loads(out)]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]


@dataclass
class Stack:
    """A stack deployed from a stack file on the swarm (`docker stack deploy`)."""

    swarm: Swarm
    name: str

    @property
    def docker(self) -> Engine:
        return self.swarm.docker

    def service(self, service: str) -> str:
        return f"{self.name}_{service}"

    def deploy(self, stack_file: Path, variables: Mapping[str, str]) -> None:
        # --resolve-image never: the images are in the daemon's store, no registry is asked.
        self.docker("stack", "deploy", "--resolve-image", "never", "--compose-file",
                    str(stack_file), self.name, env=variables, timeout=120)

    def remove(self) -> None:
        """The stack gone, and its containers with it (bounded)."""
        self.docker("stack", "rm", self.name, check=False, timeout=120)
        deadline = time.monotonic() + DOCKERD_STOP_SECONDS
        while self.docker("ps", "--all", "--quiet", "--filter",
                          f"label=com.docker.stack.namespace={self.name}", check=False):
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)

    def inspect(self, service: str) -> dict[str, Any]:
        (found,) = json.loads(self.docker("service", "inspect", self.service(service)))
        return found

    def update_state(self, service: str) -> str:
        """The last update's state (updating, completed, rollback_completed, ...); "" if none."""
        return (self.inspect(service).get("UpdateStatus") or {}).get("State", "")

    def tasks(self, service: str) -> list[dict[str, Any]]:
        """The tasks meant to run (desired state running), newest first."""
        ids = self.docker("service", "ps", "--quiet", "--no-trunc", "--filter",
                          "desired-state=running", self.service(service)).split()
        return json.loads(self.docker("inspect", *ids)) if ids else []

    def all_tasks(self, service: str) -> list[dict[str, Any]]:
        ids = self.docker("service", "ps", "--quiet", "--no-trunc",
                          self.service(service)).split()
        return json.loads(self.docker("inspect", *ids)) if ids else []

    def containers(self, service: str) -> list[Container]:
        """The service's running containers, those still stopping included."""
        ids = self.docker("ps", "--quiet", "--no-trunc", "--filter",
                          f"label={SERVICE_LABEL}={self.service(service)}").split()
        return [Container(self.docker, cid, 0) for cid in ids]

    def converged(self, service: str, replicas: int, image: str) -> bool:
        """`replicas` tasks of `image` running (healthy: Swarm holds a task in
        `starting` until its health check passes), and no other container left."""
        tasks = self.tasks(service)
        return (len(tasks) == replicas
                and all(task["Status"]["State"] == "running"
                        and task["Spec"]["ContainerSpec"]["Image"] == image for task in tasks)
                and len(self.containers(service)) == replicas
                and self.update_state(service) not in ("updating", "rollback_started"))

    def wait_converged(self, service: str, replicas: int, image: str,
                       timeout: float) -> list[Container]:
        """Until `converged`; the running tasks' containers."""
        deadline = time.monotonic() + timeout
        while not self.converged(service, replicas, image):
            if time.monotonic() > deadline:
                states = [(t.get("Slot", ""), t["Status"]["State"],
                           t["Spec"]["ContainerSpec"]["Image"], t["Status"].get("Err", ""))
                          for t in self.all_tasks(service)]
                raise SwarmError(f"{self.service(service)} not at {replicas} x {image} after "
                                 f"{timeout} s (update: {self.update_state(service)!r}): "
                                 f"{states}")
            time.sleep(POLL)
        return self.containers(service)

    def wait_update(self, service: str, state: str, timeout: float) -> None:
        """Until the service's update reaches `state` (completed, rollback_completed)."""
        deadline = time.monotonic() + timeout
        while (now := self.update_state(service)) != state:
            if time.monotonic() > deadline:
                raise SwarmError(f"{self.service(service)}: update {now!r}, not {state!r}, "
                                 f"after {timeout} s: {self.inspect(service).get('UpdateStatus')}")
            time.sleep(POLL)


def _cgroup_procs(parent: str) -> set[int]:
    return {int(pid) for procs in CGROUP_ROOT.glob(f"*/{parent}/**/cgroup.procs")
            for pid in procs.read_text().split()}


def _kill_leftovers(swarm: Swarm) -> None:
    """SIGKILL what a daemon that did not stop left: its containers (in its cgroup
    parent) and containerd with its shims (in the namespace); bounded."""
    for _ in range(20):
        pids = _cgroup_procs(swarm.cgroup_parent) | {
            int(pid) for pid in run("ip", "netns", "pids", swarm.namespace,
                                    check=False).split()}
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _unmount_under(directory: Path) -> None:
    """Mounts a killed daemon left under its directory, deepest first (overlays, shm)."""
    prefix = str(directory.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run("umount", "--lazy", mount, check=False)


def _remove_cgroups(parent: str) -> None:
    """The daemon's cgroup parent, now empty, in every hierarchy (deepest first)."""
    for controller in CGROUP_ROOT.iterdir():
        top = controller / parent
        if top.is_dir():
            for path in sorted(top.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with suppress(OSError):  # one Docker still uses, or already gone
                    path.rmdir()


def _leave(swarm: Swarm) -> None:
    """`swarm leave` while the daemon runs; one that does not answer is stopped next."""
    if swarm.process is not None and swarm.process.poll() is None:
        with suppress(EngineError, subprocess.TimeoutExpired):
            swarm.docker("swarm", "leave", "--force", check=False, timeout=60)


def _stop_daemon(swarm: Swarm) -> None:
    """SIGTERM to the daemon we started (it stops its containers), SIGKILL if it
    hangs; a pid file that names another process is raised once it is stopped."""
    process = swarm.process
    if process is None:
        return
    pidfile = swarm.directory / "docker.pid"
    # Read first: dockerd removes its pid file as it exits.
    named = pidfile.read_text().strip() if pidfile.exists() else ""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(DOCKERD_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
    if named and named != str(process.pid):
        raise SwarmError(f"the pid file says {named}, we started {process.pid}")


def _tear_down(swarm: Swarm) -> None:
    """Every step in order, each even when one before it failed (a swarm left
    half torn down breaks the next run); their failures raised after."""
    steps: list[Callable[[], object]] = [
        lambda: _leave(swarm),
        lambda: _stop_daemon(swarm),
        lambda: _kill_leftovers(swarm),
        lambda: _unmount_under(swarm.directory),
        lambda: _remove_cgroups(swarm.cgroup_parent),
        lambda: run("ip", "netns", "delete", swarm.namespace, check=False),
        lambda: subprocess.run(["rm", "-rf", "--one-file-system", str(swarm.directory)],
                               check=False),
    ]
    failures = []
    for step in steps:
        try:
            step()
        except Exception as error:
            failures.append(error)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup("the swarm's teardown failed", failures)


@contextmanager
def started(directory: Path, seccomp_profile: Path, docker: str = "docker") -> Iterator[Swarm]:
    """A one-node swarm in a new network namespace, with `directory` its daemon's home;
    torn down on exit whatever happened."""
    directory.mkdir(parents=True, exist_ok=True)
    namespace = f"flask-stack-swarm-{os.getpid()}"
    sock = directory / "docker.sock"
    swarm = Swarm(namespace, directory, Engine(docker, host=f"unix://{sock}"))
    try:
        run("ip", "netns", "add", namespace)
        # `ip netns exec` is fine for `ip` itself; only dockerd must not run under it.
        run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        with swarm.log.open("wb") as log:
            swarm.process = subprocess.Popen(
                [*swarm.nsenter, "dockerd", "--host", f"unix://{sock}",
                 "--data-root", str(directory / "root"), "--exec-root", str(directory / "exec"),
                 "--pidfile", str(directory / "docker.pid"), "--iptables=false",
                 f"--cgroup-parent=/{swarm.cgroup_parent}",
                 f"--seccomp-profile={seccomp_profile}", "--no-new-privileges"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + DOCKERD_START_SECONDS
        while not swarm.docker.answers():
            if swarm.process.poll() is not None or time.monotonic() > deadline:
                raise SwarmError(f"dockerd did not start:\n{swarm.daemon_log()}")
            time.sleep(POLL)
        swarm.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        yield swarm
    finally:
        _tear_down(swarm)


# --- run inside the namespace (python -m harness.swarm get|load ...)


def _get(url: str, timeout: float) -> None:
    response = requests.get(url, timeout=timeout)
    print(json.dumps({"status": response.status_code, "headers": dict(response.headers),
                      "body": base64.b64encode(response.content).decode()}))


def _load(url: str, clients: int, interval: float, seconds: float) -> None:
    """Closed-loop clients until stdin closes (or `seconds`); every outcome as JSON."""
    closed = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    with SteadyClient(url, clients=clients, interval=interval) as load:
        deadline = time.monotonic() + seconds
        while not any(o.status == 200 for o in load.snapshot()):
            if time.monotonic() > deadline:
                sys.exit(f"no answer from {url} in {seconds} s: {load.snapshot()[-1:]}")
            time.sleep(0.05)
        print(LOAD_READY, flush=True)
        closed.wait(max(0.0, deadline - time.monotonic()))
    print(json.dumps([[o.started, o.ended, o.status, o.path, o.error]
                      for o in load.snapshot()]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.swarm")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("get")
    get.add_argument("url")
    get.add_argument("--timeout", type=float, default=10)
    load = commands.add_parser("load")
    load.add_argument("url")
    load.add_argument("--clients", type=int, default=2)
    load.add_argument("--interval", type=float, default=0.02)
    load.add_argument("--seconds", type=float, default=300)
    args = parser.parse_args()
    if args.command == "get":
        _get(args.url, args.timeout)
    else:
        _load(args.url, args.clients, args.interval, args.seconds)


if __name__ == "__main__":
    main()
