"""Shared fixtures for the three layers: app (test client), stack (local processes), image.

`stack` and `container` are the running product of their layer; `server` is
either, so the HTTP contract is written once and checked against both.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO, Protocol

import pytest
import requests

import harness.engine
from harness.engine import Engine, EngineError

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI") == "true"
# What the image copies into /srv, and the stack layer copies likewise.
RUNTIME_FILES = ("app", "nginx", "stack", "supervisord.conf")
START_TIMEOUT = 60
TEST_APPS = ROOT / "tests" / "apps"


def require(condition: object, reason: str) -> None:
    """Skip a layer whose tool is missing on a laptop; under CI=true that is a failure."""
    if not condition:
        if CI:
            pytest.fail(f"{reason} (CI=true: no layer may be skipped)")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_stats() -> Iterator[tuple[int, int, int, str]]:
    """(pid, ppid, session, state) of every process, from the host's /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            yield int(stat.parent.name), int(fields[1]), int(fields[3]), fields[0]


def descendants(pid: int) -> list[int]:
    """A process and all its descendants, from the host's /proc (a container's too)."""
    children: dict[int, list[int]] = {}
    for child, ppid, _, _ in proc_stats():
        children.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def processes(container: Container) -> dict[int, dict[str, str]]:
    """A container's process tree from the host's /proc: pid -> uid, ppid, name, cmdline."""
    found = {}
    for pid in descendants(int(container.inspect("{{.State.Pid}}"))):
        proc = Path(f"/proc/{pid}")
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = dict(re.findall(r"^(Uid|PPid|Name):\s+(\S+)", status, re.M))
        found[pid] = {"uid": fields["Uid"], "ppid": fields["PPid"], "name": fields["Name"],
                      "cmdline": cmdline}
    return found


def pss_mib(pids: list[int]) -> float:
    """Sum of PSS over processes: pages they share are counted once."""
    total_kib = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
    return round(total_kib / 1024, 2)


class Server(Protocol):
    base_url: str

    def logs(self) -> str: ...


def wait_until_up(base_url: str, alive: callable, logs: callable) -> None:  # type: ignore[valid-type]
    """Wait for /healthz to answer 200, failing early if the server died."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive():
            pytest.fail(f"server exited during start:\n{logs()}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not up after {START_TIMEOUT} s:\n{logs()}")


# --- stack layer: the repository's own configuration, run as local processes


@dataclass(kw_only=True)
class LocalServer:
    """A server run as a process on this machine, on a free loopback port."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalStack(LocalServer):
    """The entrypoint, Supervisord, Gunicorn and Nginx as processes on this machine."""

    install: Path
    work: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.work / "output.log"

    def start(self, wait: bool = True) -> LocalStack:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": f"{self.install}:{self.install / 'site-packages'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(self.work),
            "APP_DIR": str(self.install / "app"),
            "PORT": str(self.port),
            **self.env,
        }
        # As root, run as nobody like the image runs as its own user: Nginx
        # then stays unprivileged exactly as in the container.
        user = "nobody" if os.geteuid() == 0 else None
        # Output through a pipe owned by the stack's user, as runc hands it to a
        # container's process: Supervisord reopens it as /dev/stdout.
        read_end, write_end = os.pipe()
        if user:
            os.fchown(write_end, pwd.getpwnam(user).pw_uid, -1)
        self.process = subprocess.Popen(
            [stack_python(), "-m", "stack.entrypoint"],
            cwd=self.work, env=env, stdout=write_end, stderr=write_end,
            user=user, start_new_session=True,
        )
        os.close(write_end)
        reader = os.fdopen(read_end, "rb")
        threading.Thread(target=self._collect, args=(reader,), daemon=True).start()
        if wait:
            wait_until_up(self.base_url, lambda: self.process.poll() is None, self.logs)
        return self

    def _collect(self, pipe: IO[bytes]) -> None:
        with self.log_path.open("ab", buffering=0) as log:
            for line in pipe:
                log.write(line)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        """SIGTERM the main process, as `docker stop` does."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20) -> int:
        self.terminate()
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {timeout} s:\n{self.logs()}")
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL every process of the stack's session: Supervisord gives each
        program a process group of its own, and a killed parent leaves orphans."""
        if self.process is None:
            return
        for _ in range(50):  # until none is left, in case one forked meanwhile
            members = [pid for pid, _, sid, state in proc_stats()
                       if sid == self.process.pid and state != "Z"]
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        self.process.wait()
        time.sleep(0.1)  # let the collector write the last lines


@cache
def stack_python() -> str:
    """The base interpreter; the lock's packages come from the copied site-packages."""
    python = os.path.realpath(sys.executable)
    if os.geteuid() == 0:
        probe = subprocess.run(["runuser", "-u", "nobody", "--", python, "-c", "pass"],
                               capture_output=True)
        require(probe.returncode == 0,
                f"the stack runs as nobody, who cannot run {python}: make the test venv "
                "from a Python outside /root (tests/run uses /usr/bin/python3)")
    return python


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    """A temp dir the stack's user can enter (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="flask-stack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def work_dir(scratch: Path) -> Path:
    """A fresh TMPDIR for one stack, writable by its user."""
    path = Path(tempfile.mkdtemp(dir=scratch))
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session")
def stack_install(scratch: Path) -> Path:
    """The runtime files and the lock's packages, copied like the image's COPY steps."""
    require(shutil.which("nginx"), "nginx is not installed (apt-get install nginx-light)")
    install = scratch / "install"
    for name in RUNTIME_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, install / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, install / name)
    for test_app in TEST_APPS.glob("*.py"):  # beside the app, as a user adds a module
        shutil.copy(test_app, install / "app")
    site = install / "site-packages"
    for line in (ROOT / "app" / "requirements.txt").read_text().splitlines():
        if line and line[0].isalpha():
            dist = metadata.distribution(line.split("==")[0])
            for file in dist.files or ():
                target = site / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(dist.locate_file(file), target)
    for path in [install, *install.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return install


@pytest.fixture
def start_stack(stack_install: Path, scratch: Path) -> Iterator:
    """Start a stack with extra settings: start_stack(TIMEOUT="5", wait=False)."""
    started: list[LocalStack] = []

    def start(wait: bool = True, **env: str) -> LocalStack:
        stack = LocalStack(stack_install, work_dir(scratch), env)
        started.append(stack)
        return stack.start(wait)

    yield start
    for stack in started:
        stack.kill()


@pytest.fixture(scope="session")
def stack(stack_install: Path, scratch: Path) -> Iterator[LocalStack]:
    running = LocalStack(stack_install, work_dir(scratch)).start()
    yield running
    running.kill()


# --- image layer: the built image in a real container


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine ENGINE names (harness.engine): one that does not answer skips (fails in CI)."""
    try:
        return harness.engine.chosen()
    except EngineError as error:
        require(False, str(error))
        raise


IMAGE_TAG = "localhost/flask-stack:test"
SECCOMP_PROFILE = ROOT / "security" / "seccomp.json"
# Every restriction at once, as a hardened deployment runs the image: the
# whole contract and lifecycle suite runs under these too.
HARDENED = ("--read-only", "--tmpfs=/tmp:rw,mode=1777", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--user=123456:0",
            f"--security-opt=seccomp={SECCOMP_PROFILE}")
# Gunicorn alone on TCP, without the entrypoint, Supervisord or Nginx (run
# options, then the command after the image): the same config file, so the same
# workers and threads; --bind on the command line replaces its UNIX socket.
GUNICORN_ALONE = (("--entrypoint", "/opt/venv/bin/python", "--env", "STACK_RUN_DIR=/tmp"),
                  ("-m", "gunicorn", "--config", "/srv/stack/gunicorn.conf.py",
                   "--bind", "0.0.0.0:1300"))


def build_image(engine: Engine, tag: str, target: str | None = None,
                platform: str | None = None, base_image: str | None = None,
                context: Path = ROOT, no_cache: bool = False) -> str:
    """Build a target of the Dockerfile the way every test build is made."""
    args = ["build", "--tag", tag]
    if no_cache:
        args.append("--no-cache")
    if target:
        args += ["--target", target]
    if platform:
        args += ["--platform", platform]
    if engine.command == "podman":
        args += ["--format", "docker"]  # Podman's OCI format would drop HEALTHCHECK
    base_image = base_image or os.environ.get("BASE_IMAGE")
    if base_image:
        args += ["--build-arg", f"BASE_IMAGE={base_image}"]
    if os.environ.get("PIP_CERT"):
        args += ["--secret", f"id=ca_bundle,src={os.environ['PIP_CERT']}"]
    engine(*args, str(context), timeout=1800)
    return tag


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    return build_image(engine, IMAGE_TAG)


@dataclass
class Container:
    engine: Engine
    id: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def inspect(self, template: str) -> str:
        return self.engine("inspect", "--format", template, self.id)

    def output(self) -> subprocess.CompletedProcess[str]:
        """The container's stdout and stderr so far, apart."""
        # errors="replace": the access log holds whatever bytes a client sent.
        return subprocess.run([self.engine.command, "logs", self.id], capture_output=True,
                              text=True, errors="replace", timeout=60)

    def logs(self) -> str:
        result = self.output()
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine.command, "exec", self.id, *command],
                              capture_output=True, text=True, timeout=60)

    def remove(self) -> None:
        self.engine("rm", "--force", self.id, check=False)

    def terminate(self) -> None:
        """SIGTERM to the main process, as `docker stop` sends first."""
        self.engine("kill", "--signal", "TERM", self.id)

    def stop(self, timeout: float = 20) -> int:
        """`docker stop`: SIGTERM, then SIGKILL after the engine's default 10 s."""
        self.engine("stop", self.id, timeout=timeout + 10)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                pytest.fail(f"container still running after {timeout} s:\n{self.logs()}")
            time.sleep(0.2)
        return int(self.inspect("{{.State.ExitCode}}"))


def start_container(engine: Engine, image: str, env: dict[str, str] | None = None,
                    args: tuple[str, ...] = (), wait: bool = True,
                    command: tuple[str, ...] = ()) -> Container:
    """Run the image on a free loopback port, the test apps beside the app;
    `args` go before the image, `command` after it."""
    port = free_port()
    options = [f"--env={key}={value}" for key, value in (env or {}).items()]
    # The test apps sit beside the app, as a user adds a module.
    mounts = [f"--volume={path}:/srv/app/{path.name}:ro" for path in TEST_APPS.glob("*.py")]
    cid = engine("run", "--detach", f"--publish=127.0.0.1:{port}:1300", *options,
                 *mounts, *args, image, *command)
    container = Container(engine, cid, port)
    if wait:
        try:
            wait_until_up(container.base_url, container.running, container.logs)
        except BaseException:
            container.remove()
            raise
    return container


@pytest.fixture(scope="session")
def run_container(engine: Engine, image: str) -> Iterator:
    """Run the image: run_container(env={...}, args=(...), wait=True, command=(...))."""
    started: list[Container] = []

    def run(env: dict[str, str] | None = None, args: tuple[str, ...] = (),
            wait: bool = True, image: str = image, command: tuple[str, ...] = ()) -> Container:
        container = start_container(engine, image, env, args, wait=False, command=command)
        started.append(container)
        if wait:
            wait_until_up(container.base_url, container.running, container.logs)
        return container

    yield run
    for container in started:
        container.remove()


@pytest.fixture(scope="session")
def container(run_container) -> Container:  # type: ignore[no-untyped-def]
    return run_container()


@pytest.fixture(scope="session")
def hardened_container(run_container) -> Container:  # type: ignore[no-untyped-def]
    return run_container(args=HARDENED)


LAYERS = ["stack", "image", "hardened"]


@pytest.fixture(params=LAYERS)
def server(request: pytest.FixtureRequest) -> Server:
    """The running product of the stack layer, of the image, and of the hardened image."""
    return request.getfixturevalue({"stack": "stack", "image": "container",
                                    "hardened": "hardened_container"}[request.param])


@pytest.fixture(params=LAYERS)
def launch(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Start a fresh stack or container with settings: launch(TIMEOUT="5")."""
    if request.param == "stack":
        return request.getfixturevalue("start_stack")
    run_container = request.getfixturevalue("run_container")
    args = HARDENED if request.param == "hardened" else ()
    return lambda wait=True, **env: run_container(env=env, args=args, wait=wait)
