"""The four setups the benchmark compares, all from one image, and running them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.containers import Container
from harness.engine import Engine
from harness.images import GUNICORN_ALONE, build_image
from harness.procfs import descendants, pss_mib
from harness.server import free_port, wait_until_up

TAG = "localhost/flask-stack:bench"
NGINX_CONF = Path(__file__).resolve().parent / "nginx-alone.conf"
PY = "/opt/venv/bin/python"
FLASK_DEV = (
    "import sys; sys.path.insert(0, '/srv/app'); from app import app; "
    "app.run(host='0.0.0.0', port=1300, threaded=True)"
)
IDLE_SETTLE_SECONDS = 2
UP_POLL = 0.01  # seconds between probes: a cold start is timed to the first answer


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    args: tuple[str, ...]  # run options before the image
    command: tuple[str, ...] = ()  # after the image


SETUPS = (
    Setup("stack", "Image: Nginx + Gunicorn (full stack)", ()),
    Setup("gunicorn", "Gunicorn alone on TCP", *GUNICORN_ALONE),
    Setup(
        "nginx",
        "Nginx alone, fixed JSON",
        ("--entrypoint", "/usr/sbin/nginx", "--volume", f"{NGINX_CONF}:/tmp/bench-nginx.conf:ro"),
        ("-g", "daemon off;", "-c", "/tmp/bench-nginx.conf", "-e", "stderr"),
    ),
    # debug=False: debug=True adds the reloader (a second process) and the debugger.
    Setup(
        "flask_dev",
        "Flask development server (original, debug=False)",
        ("--entrypoint", PY),
        ("-c", FLASK_DEV),
    ),
)


def with_settings(setups: tuple[Setup, ...], settings: list[str]) -> tuple[Setup, ...]:
    """The image's settings (KEY=VALUE) given to the setups that read them."""
    options = tuple(f"--env={item}" for item in settings)
    return tuple(replace(s, args=options + s.args) if s.name in ("stack", "gunicorn") else s
                 for s in setups)


def build(engine: Engine, tag: str, context: Path, no_cache: bool = False) -> float:
    """The tests' own build (build_image), timed in seconds."""
    start = time.monotonic()
    build_image(engine, tag, context=context, no_cache=no_cache)
    return time.monotonic() - start


@dataclass
class Running:
    setup: Setup
    container: Container
    up_s: float  # from `run` to the first answer


def run(engine: Engine, setup: Setup, started: list[Container]) -> Running:
    port = free_port()
    begin = time.monotonic()
    cid = engine(
        "run", "--detach", f"--publish=127.0.0.1:{port}:1300", *setup.args, TAG, *setup.command
    )
    container = Container(engine, cid, port)
    started.append(container)
    # GET /, which every setup answers: the health path is the stack's alone.
    wait_until_up(container.base_url, container.running, container.logs, poll=UP_POLL, path="/")
    return Running(setup, container, time.monotonic() - begin)


@contextlib.contextmanager
def containers(engine: Engine) -> Iterator[list[Container]]:
    started: list[Container] = []
    try:
        yield started
    finally:
        # Podman's rm --force first waits out the stop timeout; the figures are taken already.
        fast = ("--time", "0") if engine.command == "podman" else ()
        for container in started:
            engine("rm", "--force", *fast, container.id, check=False)


def memory(container: Container) -> dict[str, Any]:
    """Sum of PSS over every process of the container: shared pages counted once."""
    pids = descendants(int(container.inspect("{{.State.Pid}}")))
    return {"pss_mib": pss_mib(pids), "processes": len(pids)}
