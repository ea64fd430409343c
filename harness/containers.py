"""The image run in a real container, published on a free loopback port."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from harness.engine import Engine
from harness.paths import TEST_APPS
from harness.server import ServerError, free_port, wait_until_up
from stack.settings import Settings


@dataclass
class Container:
    engine: Engine
    id: str
    port: int
    metrics_port: int = 0  # where the metrics' port is published, if it is

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def inspect(self, template: str) -> str:
        return self.engine("inspect", "--format", template, self.id)

    def output(self) -> subprocess.CompletedProcess[str]:
        """The container's stdout and stderr so far, apart."""
        # errors="replace": the access log holds whatever bytes a client sent.
        return subprocess.run([self.engine.command, "logs", self.id], capture_output=True,
                              text=True, errors="replace", timeout=60,
                              env=self.engine.environ())

    def logs(self) -> str:
        result = self.output()
        return result.stdout + result.stderr

    def exec(self, *command: str, user: str = "") -> subprocess.CompletedProcess[str]:
        """The command run in the container, as `user` if given (else the container's)."""
        as_user = ("--user", user) if user else ()
        return subprocess.run([self.engine.command, "exec", *as_user, self.id, *command],
                              capture_output=True, text=True, timeout=60,
                              env=self.engine.environ())

    def remove(self) -> None:
        # Podman's --force stops first, for up to the stop timeout; Docker's kills.
        now = ("--time", "0") if self.engine.command == "podman" else ()
        self.engine("rm", "--force", *now, self.id, check=False)

    def terminate(self) -> None:
        """SIGTERM to the main process, as `docker stop` sends first."""
        self.engine("kill", "--signal", "TERM", self.id)

    def stop(self, timeout: float = 20, grace: int | None = None) -> int:
        """`docker stop`: SIGTERM, then SIGKILL after `grace` seconds (the engine's
        default 10 s, or the container's own stop timeout, when None)."""
        grace_args = () if grace is None else ("--time", str(grace))
        self.engine("stop", *grace_args, self.id, timeout=timeout + 10)
        return self.wait_exit(timeout)

    def exited_at(self) -> float:
        """When the container's main process ended, as the engine recorded it
        (Unix time): what it took to stop, without the engine's own delays."""
        text = self.inspect("{{.State.FinishedAt}}")
        # Docker: 2026-12-02T20:01:02.123456789Z; Podman: 2026-12-02 20:01:02.123456789 +0000 UTC
        day, clock = text.replace("T", " ").split()[:2]
        whole, _, fraction = clock.rstrip("Z").partition(".")
        moment = datetime.strptime(f"{day} {whole}", "%Y-%m-%d %H:%M:%S")
        return moment.replace(tzinfo=UTC).timestamp() + float(f"0.{fraction or 0}")

    def health(self) -> str:
        """The image's HEALTHCHECK as the engine reports it: healthy, unhealthy or starting.

        Docker runs the check by itself, every interval. Podman schedules it with
        systemd timers, and without systemd it never runs by itself: here it is
        run once, now (`podman healthcheck run`, exit 0 when healthy).
        """
        if self.engine.command == "podman":
            run = subprocess.run(["podman", "healthcheck", "run", self.id],
                                 capture_output=True, text=True, timeout=60)
            return "healthy" if run.returncode == 0 else run.stdout.strip() or "unhealthy"
        return self.inspect("{{.State.Health.Status}}")

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until the engine reports the container healthy; a container that exits fails."""
        deadline = time.monotonic() + timeout
        while (status := self.health()) != "healthy":
            if not self.running():
                raise ServerError(f"container exited before it was healthy:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise ServerError(f"container {status}, not healthy, after {timeout} s:\n"
                                  f"{self.logs()}")
            time.sleep(0.5)

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise ServerError(f"container still running after {timeout} s:\n{self.logs()}")
            time.sleep(0.2)
        return int(self.inspect("{{.State.ExitCode}}"))


def start_container(engine: Engine, image: str, env: dict[str, str] | None = None,
                    args: tuple[str, ...] = (), wait: bool = True,
                    command: tuple[str, ...] = (), test_apps: bool = True,
                    path: str = "/healthz", poll: float = 0.1) -> Container:
    """Run the image on a free loopback port, its metrics' port on another (with
    the test apps beside the app, unless not `test_apps`); `args` go before the
    image, `command` after it; `wait` until `path` answers 200."""
    port, metrics_port = free_port(), free_port()
    options = [f"--env={key}={value}" for key, value in (env or {}).items()]
    mounts = ([f"--volume={app}:/srv/app/{app.name}:ro" for app in TEST_APPS.glob("*.py")]
              if test_apps else [])
    inside = (env or {}).get("METRICS_PORT", "")
    inside = inside if inside.isdigit() else Settings.default("METRICS_PORT")
    cid = engine("run", "--detach", f"--publish=127.0.0.1:{port}:1300",
                 f"--publish=127.0.0.1:{metrics_port}:{inside}", *options,
                 *mounts, *args, image, *command)
    container = Container(engine, cid, port, metrics_port)
    if wait:
        try:
            wait_until_up(container.base_url, container.running, container.logs, poll, path)
        except BaseException:
            container.remove()
            raise
    return container
