"""compose.yaml run from the file itself, by the Compose that goes with the engine:
Docker Compose v2 with Docker Engine, podman-compose with Podman."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.containers import Container
from harness.deployfiles import COMPOSE
from harness.engine import Engine
from harness.paths import ROOT

# The labels both Composes put on the containers they make.
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class ComposeError(RuntimeError):
    """A Compose command failed; the message holds its output."""


def compose_command(engine: Engine) -> tuple[str, ...] | None:
    """The Compose for this engine, or None if there is none here.

    Docker: the `docker compose` plugin, Compose v2, what users run (.ci/setup-host
    installs it); never Compose 1.29's `docker-compose`, which reads the file
    differently (it rejects a top-level `name`). Podman: podman-compose, the one
    the tests' requirements pin if it is there.
    """
    if engine.command == "docker":
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
        return ("docker", "compose") if plugin.returncode == 0 else None
    pinned = Path(sys.executable).parent / "podman-compose"
    found = str(pinned) if pinned.exists() else shutil.which("podman-compose")
    return (found,) if found else None


@dataclass
class ComposeProject:
    """One project of compose.yaml; `env` fills the file's variables (FLASK_STACK_IMAGE)."""

    engine: Engine
    command: tuple[str, ...]
    name: str
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float = 600) -> str:
        """`compose -p NAME -f compose.yaml ARGS...` in the repository, as a user runs it."""
        result = subprocess.run(
            [*self.command, "--project-name", self.name, "--file", str(COMPOSE), *args],
            cwd=ROOT, env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=timeout)
        if result.returncode != 0:
            raise ComposeError(f"{' '.join(self.command)} {' '.join(args)} failed "
                               f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def containers(self, service: str | None = None, port: int = 0) -> list[Container]:
        """The service's containers (or the project's), running or not (`port`:
        where it is published)."""
        labels = [f"{PROJECT_LABEL}={self.name}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
        ids = self.engine("ps", "--all", "--quiet", "--no-trunc", *filters).split()
        return [Container(self.engine, cid, port) for cid in ids]

    def wait_healthy(self, service: str, count: int, timeout: float = 120,
                     port: int = 0) -> list[Container]:
        """The service's `count` containers, once the engine reports each healthy."""
        containers = self.containers(service, port)
        assert len(containers) == count, f"{service}: {len(containers)} containers, not {count}"
        for container in containers:
            container.wait_healthy(timeout)
        return containers

    def down(self) -> None:
        """Containers, network and volumes gone. podman-compose's `down` knows only
        the replicas the file declares, and leaves the network to those scaled out
        beyond them: they are removed, and `down` goes again."""
        try:
            self("down", "--volumes", timeout=300)
        finally:
            leftovers = self.containers()
            for container in leftovers:
                container.remove()
        if leftovers:
            self("down", "--volumes", timeout=300)
