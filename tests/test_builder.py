"""Image layer: the builder and runtime targets, and a project of its own built on
them (examples/external) the way a user builds theirs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import requests

from harness import images
from harness.engine import Engine
from harness.images import EXTERNAL, HARDENED, RUNTIME_TAG, build_image
from harness.paths import ROOT
from tools.xray.gather import gather

pytestmark = [pytest.mark.image, pytest.mark.engine]

XML = b"<catalog><book><title>Flask</title></book><book><title>Nginx</title></book></catalog>"


def dockerfile_lines() -> list[str]:
    return [line for line in (EXTERNAL / "Dockerfile").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_projects_dockerfile_is_ten_lines_on_the_two_images() -> None:
    lines = dockerfile_lines()
    assert len(lines) <= 10
    assert [line for line in lines if line.startswith("FROM ")] == [
        "FROM flask-stack:builder AS build", "FROM flask-stack:runtime"]


def test_the_projects_context_holds_no_file_of_the_stack() -> None:
    tracked = subprocess.run(["git", "ls-files", "examples/external"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    names = {path.removeprefix("examples/external/") for path in tracked}
    assert names >= {"Dockerfile", "requirements.txt", "myapp/__init__.py"}
    stack = {"stack", "nginx", "image", "supervisord.conf", "app", ".dockerignore"}
    assert not {name.split("/")[0] for name in names} & stack


def test_the_runtime_has_the_stack_and_no_app(engine: Engine,
                                              stack_images: tuple[str, str]) -> None:
    probe = ("import importlib.util as u, os; "
             "print(u.find_spec('gunicorn') is not None, u.find_spec('flask') is None, "
             "sorted(os.listdir('/srv/app')))")
    assert engine("run", "--rm", RUNTIME_TAG, "python", "-c", probe) == (
        "True True ['instance']")


def test_the_builder_carries_the_runtimes_python_and_the_tool(
        engine: Engine, stack_images: tuple[str, str]) -> None:
    builder, runtime = stack_images
    version = "import sys; print(sys.version)"
    assert engine("run", "--rm", builder, "python3", "-c", version) == engine(
        "run", "--rm", runtime, "python", "-c", version)
    usage = engine("run", "--rm", builder, "flask-stack-add", "--help")
    assert "requirements [out]" in usage and "--packages" in usage


def test_a_conflicting_pin_stops_the_tool_with_a_clear_message(
        engine: Engine, stack_images: tuple[str, str]) -> None:
    """A project that pins Gunicorn otherwise than the stack does."""
    builder, _ = stack_images
    pin = ("gunicorn==23.0.0 "
           "--hash=sha256:ec400d38950de4dfd418cff8328b2c8faed0edb0d517d3394e457c317908ca4d")
    result = subprocess.run(
        [engine.command, "run", "--rm", "--entrypoint", "sh", builder, "-c",
         f"echo '{pin}' > /tmp/r.txt && flask-stack-add /tmp/r.txt"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Cannot install gunicorn==23.0.0 and gunicorn==27.0.1" in result.stdout + result.stderr
    assert "pinned alike" in result.stderr


def test_the_project_serves_hardened_with_its_native_libraries(
        run_container: Callable[..., Any], external_image: str) -> None:
    server = run_container(image=external_image, args=HARDENED)
    assert requests.get(f"{server.base_url}/", timeout=10).json() == {"msg": "Success!"}
    titles = requests.post(f"{server.base_url}/titles", data=XML, timeout=10)
    assert titles.json() == {"titles": ["Flask", "Nginx"]}  # lxml's bundled libxml2
    kind = requests.post(f"{server.base_url}/type", data=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
                         timeout=10)
    assert kind.json() == {"mime": "application/pdf"}  # libmagic from EXTRA_PACKAGES


def test_xray_lists_what_the_project_added(engine: Engine, external_image: str) -> None:
    facts = gather(external_image, engine)
    debian = {package.name for package in facts.packages}
    python = {re.sub(r"[-_.]+", "-", dist.name).lower() for dist in facts.distributions}
    assert {"libmagic1t64", "libmagic-mgc"} <= debian
    assert {"lxml", "python-magic", "flask", "gunicorn"} <= python


def test_the_project_image_has_no_shell(engine: Engine, external_image: str) -> None:
    shell = subprocess.run([engine.command, "run", "--rm", "--entrypoint", "sh", external_image],
                           capture_output=True, timeout=60)
    assert shell.returncode != 0


def test_every_target_carries_the_version_labels(engine: Engine, image: str,
                                                 stack_images: tuple[str, str]) -> None:
    """One version, in the Dockerfile; CHANGELOG.md's newest entry is it."""
    version = images.version()
    newest = re.search(r"^## \[?(\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert newest and newest[1] == version
    python = engine("run", "--rm", image, "python", "-c",
                    "import sys; print('%d.%d' % sys.version_info[:2])")
    for tag in (image, *stack_images):
        labels = engine("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
        assert f'"org.opencontainers.image.version":"{version}"' in labels, tag
        assert f'"io.flask-stack.python.version":"{python}"' in labels, tag
        assert '"org.opencontainers.image.revision":' in labels, tag
        assert '"io.flask-stack.nginx.version":"1.' in labels, tag


def test_the_revision_label_is_the_build_argument(engine: Engine,
                                                  stack_images: tuple[str, str]) -> None:
    # Buildah 1.28 (Podman 4.3) reuses a cached LABEL layer whatever the build
    # argument says: there, only a build without the cache shows the revision.
    tag = build_image(engine, "localhost/flask-stack:revision-test", "runtime",
                      build_args={"REVISION": "0123abc"}, no_cache=engine.command == "podman")
    labels = engine("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
    assert '"org.opencontainers.image.revision":"0123abc"' in labels
    engine("rmi", tag, check=False)
