"""Fixtures and hooks for the test layers; what drives the stack lives in harness/.

`stack` and `container` are the running product of their layer; `server` is
either, so the HTTP contract is written once and checked against both. Each
test carries the marker of its layer (pyproject.toml), so `-m` runs one layer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import harness.engine
import harness.examples
import harness.local
from harness.containers import Container, start_container
from harness.engine import Engine, EngineError
from harness.images import (
    BUILDER_TAG,
    EXTERNAL,
    HARDENED,
    IMAGE_TAG,
    RUNTIME_TAG,
    build_image,
)
from harness.local import LocalStack, StackUnavailable, install_stack, stack_python, work_dir
from harness.server import Server, wait_until_up

# The shared assertions report their values like a test's own.
pytest.register_assert_rewrite("harness.checks", "harness.sboms")

# Every test runs on one of these; pyproject.toml registers them as markers.
LAYERS = ("app", "stack", "image", "hardened", "arm64", "deploy", "compose", "swarm",
          "bench", "reliability", "release")
# Where the `server` and `launch` fixtures run a test: each its own layer.
RUNNING = ("stack", "image", "hardened")


@pytest.hookimpl(tryfirst=True)  # before -m deselects: an unmarked test must not vanish quietly
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if not any(item.get_closest_marker(layer) for layer in LAYERS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a layer marker ({', '.join(LAYERS)}): "
                                + ", ".join(unmarked))
    # Docker's own commands run in the ENGINE=docker pass (.ci/run); any other
    # pass leaves them out, as -m would, rather than skipping them.
    if harness.engine.name() != "docker":
        other = [item for item in items if item.get_closest_marker("docker")]
        if other:
            config.hook.pytest_deselected(items=other)
            items[:] = [item for item in items if not item.get_closest_marker("docker")]


def pytest_report_header(config: pytest.Config) -> str:
    try:
        found = harness.local.versions()
    except StackUnavailable as error:
        found = str(error)
    return (f"stack layer: this machine's {found}; the image layers run the image's own "
            "(the builder checks them)")


@pytest.fixture(scope="session")
def require() -> Callable[[object, str], None]:
    """require(condition, reason): skip a layer whose tool is missing on a laptop;
    under CI=true that is a failure."""
    def check(condition: object, reason: str) -> None:
        if not condition:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason} (CI=true: no layer may be skipped)")
            pytest.skip(reason)

    return check


# --- stack layer: the repository's own configuration, run as local processes


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    """A temp dir the stack's user can enter (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="flask-stack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_install(scratch: Path, require: Callable[[object, str], None]) -> Path:
    require(shutil.which("nginx"), "nginx is not installed (apt-get install nginx-light)")
    try:
        stack_python()
    except StackUnavailable as error:
        require(False, str(error))
    return install_stack(scratch / "install")


@pytest.fixture
def start_stack(stack_install: Path, scratch: Path) -> Iterator:
    """Start a stack with extra settings: start_stack(TIMEOUT="5", wait=False)."""
    started: list[LocalStack] = []

    def start(wait: bool = True, command: tuple[str, ...] = (), drain_output: bool = True,
              **env: str) -> LocalStack:
        stack = LocalStack(stack_install, work_dir(scratch), env, command)
        started.append(stack)
        return stack.start(wait, drain_output)

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
def engine(require: Callable[[object, str], None]) -> Engine:
    """The engine ENGINE names; one that does not answer skips, or fails under CI."""
    try:
        return harness.engine.chosen()
    except EngineError as error:
        require(False, str(error))
        raise


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    return build_image(engine, IMAGE_TAG)


@pytest.fixture(scope="session")
def stack_images(engine: Engine) -> tuple[str, str]:
    """The builder and runtime targets, under the names a project's Dockerfile uses."""
    return build_image(engine, BUILDER_TAG, "builder"), build_image(engine, RUNTIME_TAG, "runtime")


@pytest.fixture(scope="session")
def external_image(engine: Engine, stack_images: tuple[str, str]) -> str:
    """examples/external, built from its own directory on the two stack images."""
    return build_image(engine, "localhost/flask-stack-external:test", context=EXTERNAL)


def running(engine: Engine) -> Iterator[Callable[..., Container]]:
    """run(IMAGE, env={...}, args=(...), wait=True, command=(...)); what it started is
    removed when its fixture's scope ends. A container left running costs the
    tests after it CPU, memory and its user's share of the kernel's pipe memory."""
    started: list[Container] = []

    def run(image: str, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
            wait: bool = True, command: tuple[str, ...] = ()) -> Container:
        container = start_container(engine, image, env, args, wait=False, command=command)
        started.append(container)
        if wait:
            wait_until_up(container.base_url, container.running, container.logs)
        return container

    yield run
    for container in started:
        container.remove()


@pytest.fixture
def run_image(engine: Engine) -> Iterator[Callable[..., Container]]:
    """Run any image for one test (see `running`)."""
    yield from running(engine)


@pytest.fixture(scope="module")
def run_image_for_module(engine: Engine) -> Iterator[Callable[..., Container]]:
    """Run any image for a module's tests (see `running`)."""
    yield from running(engine)


@pytest.fixture(scope="session")
def run_image_for_session(engine: Engine) -> Iterator[Callable[..., Container]]:
    """Run any image for the whole session (see `running`)."""
    yield from running(engine)


@pytest.fixture
def run_container(run_image, image: str):  # type: ignore[no-untyped-def]
    """Run the image for one test: run_container(env={...}, args=(...), wait=True,
    command=(...))."""
    def run(env: dict[str, str] | None = None, args: tuple[str, ...] = (),
            wait: bool = True, image: str = image, command: tuple[str, ...] = ()) -> Container:
        return run_image(image, env, args, wait, command)

    return run


@pytest.fixture(scope="session")
def example_image(engine: Engine, tmp_path_factory: pytest.TempPathFactory
                  ) -> Callable[[str], str]:
    """example_image(NAME): examples/NAME built into the image as its README
    says, once per session; its tag."""
    built: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in built:
            built[name] = harness.examples.build(engine, name,
                                                 tmp_path_factory.mktemp(f"example-{name}"))
        return built[name]

    return build


@pytest.fixture(scope="session")
def container(run_image_for_session, image: str) -> Container:  # type: ignore[no-untyped-def]
    return run_image_for_session(image)


@pytest.fixture(scope="session")
def hardened_container(run_image_for_session, image: str  # type: ignore[no-untyped-def]
                       ) -> Container:
    return run_image_for_session(image, args=HARDENED)


LAYER_PARAMS = [pytest.param(layer, marks=getattr(pytest.mark, layer)) for layer in RUNNING]


@pytest.fixture(params=LAYER_PARAMS)
def server(request: pytest.FixtureRequest) -> Server:
    """The running product of the stack layer, of the image, and of the hardened image."""
    return request.getfixturevalue({"stack": "stack", "image": "container",
                                    "hardened": "hardened_container"}[request.param])


@pytest.fixture(params=LAYER_PARAMS)
def launch(request: pytest.FixtureRequest, scratch: Path):  # type: ignore[no-untyped-def]
    """Start a fresh stack or container with settings: launch(TIMEOUT="5").

    app={"app.py": ..., "prestart.py": ...} gives it an app directory of its own
    (APP_DIR); command=(...) runs that instead of the server (wait=False then).
    launch.python is the layer's Python command."""
    layer = request.param

    def app_dir(files: dict[str, str | bytes]) -> Path:
        path = Path(tempfile.mkdtemp(dir=scratch))
        for name, content in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (path / name).write_bytes(content)
            else:
                (path / name).write_text(content)
        for item in [path, *path.rglob("*")]:
            item.chmod(0o755 if item.is_dir() else 0o644)
        return path

    if layer == "stack":
        start_stack = request.getfixturevalue("start_stack")

        def start(wait: bool = True, app: dict[str, str | bytes] | None = None,
                  command: tuple[str, ...] = (), **env: str) -> Server:
            if app:
                env["APP_DIR"] = str(app_dir(app))
            return start_stack(wait, command, **env)

        start.python = stack_python()  # type: ignore[attr-defined]
        return start
    run_container = request.getfixturevalue("run_container")
    hardening = HARDENED if layer == "hardened" else ()

    def run(wait: bool = True, app: dict[str, str | bytes] | None = None,
            command: tuple[str, ...] = (), **env: str) -> Server:
        args = hardening
        if app:
            env["APP_DIR"] = "/srv/custom"
            args = (f"--volume={app_dir(app)}:/srv/custom:ro", *args)
        return run_container(env=env, args=args, wait=wait, command=command)

    run.python = "python"  # type: ignore[attr-defined]
    return run
