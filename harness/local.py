"""The stack layer: the repository's own configuration, run as local processes."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import IO

from harness.images import RUNTIME_FILES, locked, version
from harness.paths import ROOT, TEST_APPS
from harness.procfs import stats
from harness.server import ServerError, free_port, wait_until_up


class StackUnavailable(RuntimeError):
    """This machine cannot run the stack layer."""


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
    command: tuple[str, ...] = ()  # run instead of the server, as `docker run IMAGE COMMAND`
    metrics_port: int = field(default_factory=free_port)
    exited: float = 0.0  # when wait_exit saw the main process gone (Unix time)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.work / "output.log"

    def start(self, wait: bool = True, drain_output: bool = True) -> LocalStack:
        """`drain_output=False`: nothing reads the stack's stdout; `output` is its
        read end, for a test to hold (a stalled log driver) or close (a gone one)."""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": f"{self.install}:{self.install / 'site-packages'}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TMPDIR": str(self.work),
            "APP_DIR": str(self.install / "app"),
            "PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            "FLASK_STACK_VERSION": version(),
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
            [stack_python(), "-P", "-m", "stack.entrypoint", *self.command],
            cwd=self.work, env=env, stdout=write_end, stderr=write_end,
            user=user, start_new_session=True,
        )
        os.close(write_end)
        self.output = os.fdopen(read_end, "rb")
        if drain_output:
            threading.Thread(target=self._collect, args=(self.output,), daemon=True).start()
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
            code = self.process.wait(timeout)
            self.exited = time.time()  # the moment it was seen gone
            return code
        except subprocess.TimeoutExpired:
            raise ServerError(f"still running after {timeout} s:\n{self.logs()}") from None
        finally:
            self.kill()

    def exited_at(self) -> float:
        """When the main process ended (Unix time), as wait_exit saw it."""
        return self.exited

    def kill(self) -> None:
        """SIGKILL every process of the stack's session: Supervisord gives each
        program a process group of its own, and a killed parent leaves orphans."""
        if self.process is None:
            return
        for _ in range(50):  # until none is left, in case one forked meanwhile
            members = [process.pid for process in stats()
                       if process.session == self.process.pid and process.state != "Z"]
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
        if probe.returncode != 0:
            raise StackUnavailable(
                f"the stack runs as nobody, who cannot run {python}: make the test venv "
                "from a Python outside /root (tests/run uses /usr/bin/python3)")
    return python


def versions() -> str:
    """The Python and Nginx the stack layer runs: this machine's, not the image's."""
    nginx = shutil.which("nginx")
    found = (subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
             .removeprefix("nginx version: ") if nginx else "no nginx")
    python = subprocess.run([stack_python(), "-V"], capture_output=True, text=True).stdout
    return f"{python.strip()} and {found}"


def install_stack(install: Path) -> Path:
    """The runtime files and the lock's packages, copied like the image's COPY steps."""
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
    for name in locked():
        dist = metadata.distribution(name)
        for file in dist.files or ():
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dist.locate_file(file), target)
    for path in [install, *install.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return install


def work_dir(scratch: Path) -> Path:
    """A fresh TMPDIR for one stack, writable by its user."""
    path = Path(tempfile.mkdtemp(dir=scratch))
    path.chmod(0o777)
    return path
