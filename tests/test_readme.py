"""The README's commands, exactly as written, on Docker, in a fresh clone.

The quick start's build-and-run line, docs/hardening.md's hardened run and the
README's `docker compose` line are read from the pages and typed into a shell
as a user would. Only what the README itself says to add is added: the CA
bundle's `--secret` where this machine needs one (PIP_CERT; Compose then builds
from what that build left in the cache, as compose.yaml says), and
DOCKER_BUILDKIT=1 on a Docker Engine before 23. The commands publish port 1300
on every interface; the test talks to it on loopback only, and stops the
container by its ID (Compose's with `docker compose down`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.checks import STOP_BUDGET_SECONDS, assert_contract
from harness.compose import ComposeProject, compose_command
from harness.containers import Container
from harness.deployfiles import compose
from harness.engine import Engine
from harness.paths import ROOT
from harness.server import wait_until_up

pytestmark = [
    pytest.mark.image,
    # The README's commands are Docker's: the ENGINE=docker pass runs them, and
    # any other leaves them out (conftest), rather than skipping them.
    pytest.mark.docker,
    pytest.mark.timeout(900),  # a cold build, as a user's first one
]

IMAGE = "flask-stack"  # the README's tag
PORT = 1300  # the port the README's commands publish
BUILD_SECONDS = 600
# What the README says for a CA bundle, and for an old Docker.
SECRET = re.compile(r"`(docker build )(--secret id=ca_bundle,src=)(\S+) (-t \S+ \.)`")
OLD_DOCKER = "Docker Engine before 23 needs `DOCKER_BUILDKIT=1`"
COMPOSE_V2 = "2."  # `docker compose version --short`: the Compose users run


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)


def prose(clone: Path) -> str:
    """The clone's README with its lines joined, as a sentence reads."""
    return " ".join((clone / "README.md").read_text().split())


def compose_up(clone: Path) -> str:
    """The command in the README's row for one host, in its table of ways to run."""
    (row,) = [line for line in (clone / "README.md").read_text().splitlines()
              if line.startswith("| One host |")]
    return re.findall(r"`([^`]+)`", row)[0]


def quick_start(clone: Path) -> str:
    """The quick start's one line: build, then run."""
    text = (clone / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (line,) = code_blocks(section)[0].strip().splitlines()
    return line


def hardened_run(clone: Path) -> str:
    """docs/hardening.md's hardened `docker run`, continuation lines and all."""
    (block,) = [block for block in code_blocks((clone / "docs" / "hardening.md").read_text())
                if block.startswith("docker run") and "--read-only" in block]
    return block.strip()


def with_ca_bundle(command: str, clone: Path) -> str:
    """The command with the README's CA bundle option, where this machine needs one."""
    cert = os.environ.get("PIP_CERT")
    if not cert:
        return command
    said = SECRET.search(prose(clone))
    assert said, "the README no longer says how to hand the build a CA bundle"
    plain = said[1] + said[4]
    assert plain in command, f"{command!r} does not build as the README's sentence does"
    return command.replace(plain, f"{said[1]}{said[2]}{shlex.quote(cert)} {said[4]}")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory,
          require: Callable[[object, str], None]) -> Path:
    """This repository as a user gets it: a fresh clone (committed files only)."""
    require(shutil.which("git"), "git is not installed")
    path = tmp_path_factory.mktemp("readme") / "flask-stack"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(path)], check=True, timeout=300)
    return path


@pytest.fixture(scope="module")
def shell_env(engine: Engine, clone: Path) -> dict[str, str]:
    """The environment the commands are typed in: ours, plus what the README says
    a Docker Engine before 23 needs."""
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_BUILDKIT"}
    version = engine("version", "--format", "{{.Server.Version}}")
    if int(version.split(".")[0]) < 23:
        assert OLD_DOCKER in prose(clone)
        env["DOCKER_BUILDKIT"] = "1"
    return env


@pytest.fixture(scope="module")
def readme_image(clone: Path, shell_env: dict[str, str]) -> str:
    """The quick start's build, alone, as typed (for the hardened run)."""
    build = with_ca_bundle(quick_start(clone).split(" && ")[0], clone)
    result = subprocess.run(["sh", "-c", build], cwd=clone, env=shell_env, capture_output=True,
                            text=True, timeout=BUILD_SECONDS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return IMAGE


def published(engine: Engine) -> list[str]:
    """Containers of the README's image publishing its port."""
    return engine("ps", "--quiet", "--no-trunc", "--filter", f"publish={PORT}",
                  "--filter", f"ancestor={IMAGE}", check=False).split()


@contextmanager
def typed(command: str, clone: Path, env: dict[str, str], engine: Engine) -> Iterator[Container]:
    """Run the command in a shell in the clone; yield its container once it answers,
    then stop it by its ID: the shell (`docker run --rm`) must exit 0."""
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", PORT)) != 0, f"port {PORT} is already taken"
    log = clone.parent / "shell.log"
    with log.open("wb") as out:
        shell = subprocess.Popen(["sh", "-c", command], cwd=clone, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)

    def output() -> str:
        return log.read_text(errors="replace")[-5000:]

    container = None
    try:
        deadline = time.monotonic() + BUILD_SECONDS
        while not (ids := published(engine)):
            assert shell.poll() is None, f"the command ended ({shell.returncode}):\n{output()}"
            assert time.monotonic() < deadline, f"no container after {BUILD_SECONDS} s"
            time.sleep(0.5)
        (cid,) = ids
        container = Container(engine, cid, PORT)
        wait_until_up(container.base_url, lambda: shell.poll() is None, output)
        yield container
        # `docker run` exits with the container's code: 0, not 137 (SIGKILL after
        # `docker stop`'s 10 s). How fast is test_lifecycle's business.
        engine("stop", cid, timeout=STOP_BUDGET_SECONDS + 30)
        assert shell.wait(30) == 0, output()
        assert published(engine) == [], "--rm: the container is gone"
    finally:
        if shell.poll() is None:
            if container is not None:
                container.remove()
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


def test_quick_start_as_written(clone: Path, shell_env: dict[str, str], engine: Engine) -> None:
    command = with_ca_bundle(quick_start(clone), clone)
    assert re.fullmatch(r"docker build .+ && docker run .+", command), command
    with typed(command, clone, shell_env, engine) as container:
        assert_contract(requests.get(f"{container.base_url}/", timeout=10))
        container.wait_healthy()  # Docker runs the image's HEALTHCHECK by itself


def test_hardened_run_as_written(clone: Path, shell_env: dict[str, str], engine: Engine,
                                 readme_image: str) -> None:
    command = hardened_run(clone)
    assert command.rstrip().endswith(readme_image)
    with typed(command, clone, shell_env, engine) as container:
        assert_contract(requests.get(f"{container.base_url}/", timeout=10))
        container.wait_healthy()
        # The restrictions are in force, as the command asked.
        assert container.inspect("{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} "
                                 "{{.HostConfig.CapDrop}}") == "123456:0 true [ALL]"
        assert "seccomp=" in container.inspect("{{.HostConfig.SecurityOpt}}")


def test_compose_up_as_written(clone: Path, shell_env: dict[str, str], engine: Engine,
                               readme_image: str) -> None:
    """`docker compose up -d --build` in the clone, on Compose v2: both replicas and
    the balancer healthy, the contract on port 1300; then `docker compose down`."""
    command = compose_up(clone)
    assert command == "docker compose up -d --build"
    assert compose_command(engine) == ("docker", "compose")
    version = engine("compose", "version", "--short")
    assert version.startswith(COMPOSE_V2), version
    # compose.yaml's default image is the README's tag, which the build above made.
    assert compose()["services"]["app"]["image"].endswith(f":-{readme_image}}}")
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", PORT)) != 0, f"port {PORT} is already taken"
    project = ComposeProject(engine, ("docker", "compose"), clone.name)  # named after its dir
    try:
        typed = subprocess.run(["sh", "-c", command], cwd=clone, env=shell_env,
                               capture_output=True, text=True, timeout=BUILD_SECONDS)
        assert typed.returncode == 0, typed.stdout[-3000:] + typed.stderr[-3000:]
        project.wait_healthy("app", compose()["services"]["app"]["deploy"]["replicas"])
        (balancer,) = project.wait_healthy("balancer", 1, port=PORT)
        assert_contract(requests.get(f"{balancer.base_url}/", timeout=10))
    finally:
        subprocess.run(["docker", "compose", "down", "--volumes"], cwd=clone, env=shell_env,
                       capture_output=True, timeout=300)
    assert project.containers() == []
