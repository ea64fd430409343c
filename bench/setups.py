"""The setups the benchmark compares, and running them.

Three images: the app's (the stack, Gunicorn alone, Nginx alone, Flask's
development server, all from it), the same image with examples/package as the
app (the real page: Jinja templates, a SQLite read, a session cookie), and the
incumbent's (bench/incumbent/: tiangolo/uwsgi-nginx-flask's design, serving
either app's same files).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.containers import Container, start_container
from harness.engine import Engine
from harness.images import GUNICORN_ALONE, IMAGE_TAG, build_image
from harness.paths import ROOT
from harness.procfs import descendants, pss_mib
from harness.server import wait_until_up

BENCH = Path(__file__).resolve().parent
# Under IMAGE_TAG's name, so two checkouts benchmarking at once keep their own.
TAG = f"{IMAGE_TAG}-bench"
TAGS = {"app": TAG, "page": f"{TAG}-page", "incumbent": f"{TAG}-incumbent"}
NGINX_CONF = BENCH / "nginx-alone.conf"
INCUMBENT = BENCH / "incumbent"
PAGE_APP = ROOT / "examples" / "package"
PAGE_MODULE = "shop:create_app()"
PY = "/opt/venv/bin/python"
FLASK_DEV = (
    "import sys; sys.path.insert(0, '/srv/app'); from app import app; "
    "app.run(host='0.0.0.0', port=1300, threaded=True)"
)
# Gunicorn alone on the real page: its prestart.py first, as the image does.
GUNICORN_ALONE_PAGE = (
    "import os, subprocess, sys; subprocess.run([sys.executable, 'prestart.py'], check=True); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
IDLE_SETTLE_SECONDS = 2
UP_POLL = 0.01  # seconds between probes: a cold start is timed to the first answer


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    args: tuple[str, ...]  # run options before the image
    command: tuple[str, ...] = ()  # after the image
    image: str = "app"  # a key of TAGS


SETUPS = (
    Setup("stack", "Image: Nginx + Gunicorn (full stack)", ()),
    Setup("stack_log_off", "Image, ACCESS_LOG=off", ("--env=ACCESS_LOG=off",)),
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
    Setup("incumbent", "uWSGI design (tiangolo/uwsgi-nginx-flask)", (), image="incumbent"),
    # The real page: examples/package's index.
    Setup("stack_page", "Image, real page", (f"--env=APP_MODULE={PAGE_MODULE}",), image="page"),
    Setup(
        "gunicorn_page",
        "Gunicorn alone, real page",
        (f"--env=APP_MODULE={PAGE_MODULE}", *GUNICORN_ALONE[0]),
        ("-c", GUNICORN_ALONE_PAGE, *GUNICORN_ALONE[1]),
        image="page",
    ),
    Setup(
        "incumbent_page",
        "uWSGI design, real page",
        ("--env=UWSGI_CHDIR=/shop", "--env=UWSGI_MODULE=wsgi_shop:app"),
        image="incumbent",
    ),
)
# An I/O-bound route, for bench.compare --route io only: tests/apps/slow.py's
# /slow, which waits as a call to a database or an API would, added to each app.
SLOW_APP = ROOT / "tests" / "apps" / "slow.py"
IO_PATH = "/slow?seconds=0.02"
IO_SETUPS = (
    Setup("stack_io", "Image, I/O-bound route",
          (f"--volume={SLOW_APP}:/srv/app/slow.py:ro", "--env=APP_MODULE=slow:app")),
    Setup(
        "gunicorn_io",
        "Gunicorn alone, I/O-bound route",
        (f"--volume={SLOW_APP}:/srv/app/slow.py:ro", "--env=APP_MODULE=slow:app",
         *GUNICORN_ALONE[0]),
        GUNICORN_ALONE[1],
    ),
    Setup("incumbent_io", "uWSGI design, I/O-bound route",
          (f"--volume={SLOW_APP}:/app/slow.py:ro", "--env=UWSGI_MODULE=slow:app"),
          image="incumbent"),
)
# Setups that read the image's settings (--env, bench.compare's variants).
CONFIGURABLE = ("stack", "gunicorn", "stack_page", "gunicorn_page", "stack_io", "gunicorn_io")


def with_settings(setups: tuple[Setup, ...], settings: list[str]) -> tuple[Setup, ...]:
    """The image's settings (KEY=VALUE) given to the setups that read them."""
    options = tuple(f"--env={item}" for item in settings)
    return tuple(replace(s, args=options + s.args) if s.name in CONFIGURABLE else s
                 for s in setups)


def build(engine: Engine, tag: str, context: Path, no_cache: bool = False,
          build_args: dict[str, str] | None = None) -> float:
    """The tests' own build (build_image), timed in seconds."""
    start = time.monotonic()
    build_image(engine, tag, context=context, no_cache=no_cache, build_args=build_args)
    return time.monotonic() - start


def build_others(engine: Engine, setups: tuple[Setup, ...]) -> None:
    """The real page's image and the incumbent's, if a setup runs on them (the
    cache makes a second build quick)."""
    wanted = {s.image for s in setups}
    if "page" in wanted:
        build(engine, TAGS["page"], ROOT, build_args={"APP_SOURCE": "examples/package"})
    if "incumbent" in wanted:
        ignore = shutil.ignore_patterns("instance", "__pycache__", "*.pyc")
        with tempfile.TemporaryDirectory(prefix="bench-incumbent-") as tmp:
            context = Path(tmp)
            shutil.copytree(INCUMBENT, context, dirs_exist_ok=True)
            shutil.copytree(ROOT / "app", context / "app", ignore=ignore)
            shutil.copytree(PAGE_APP, context / "shop", ignore=ignore)
            build(engine, TAGS["incumbent"], context)


@dataclass
class Running:
    setup: Setup
    container: Container
    up_s: float  # from `run` to the first answer


def run(engine: Engine, setup: Setup, started: list[Container]) -> Running:
    begin = time.monotonic()
    container = start_container(engine, TAGS[setup.image], args=setup.args,
                                command=setup.command, wait=False, test_apps=False)
    started.append(container)
    # `/`: the setups without the stack (Flask's server, the incumbent) have no /healthz.
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
    pid = int(container.inspect("{{.State.Pid}}"))
    if not pid:  # it has exited: nothing to measure
        return {"pss_mib": None, "processes": 0}
    pids = descendants(pid)
    return {"pss_mib": pss_mib(pids), "processes": len(pids)}
