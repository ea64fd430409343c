"""Image layer on arm64, under emulation: the same Dockerfile, a short subset of the suite.

It covers every layer of the stack once: Nginx (JSON errors of its own, the
port), Gunicorn and Flask (the contract, health), Supervisord (non-root
processes, graceful stop), the image (size bounds, architecture), and the
multi-architecture manifest of the two images.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from harness.checks import assert_contract, assert_json_error, assert_within_size_budget
from harness.containers import Container
from harness.engine import Engine
from harness.images import IMAGE_TAG, build_image
from harness.procfs import processes
from harness.variants import DEFAULT

# The emulated build takes minutes, far past the suite's per-test limit.
pytestmark = [pytest.mark.arm64, pytest.mark.timeout(3000)]

# Made by `.ci/base-image arm64` from Debian's arm64 packages.
ARM64_BASE = DEFAULT.local_base("arm64")
ARM64_TAG = f"{IMAGE_TAG}-arm64"
MANIFEST = f"{IMAGE_TAG}-multiarch"


@pytest.fixture(scope="module")
def arm64_image(engine: Engine, require: Callable[[object, str], None]) -> str:
    require(Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
            "no arm64 emulation: apt-get install qemu-user-static binfmt-support")
    require(subprocess.run([engine.command, "image", "inspect", ARM64_BASE],
                           capture_output=True).returncode == 0,
            f"no arm64 base image: run .ci/base-image arm64 to make {ARM64_BASE}")
    return build_image(engine, ARM64_TAG, platform="linux/arm64", base_image=ARM64_BASE)


@pytest.fixture(scope="module")
def arm64_container(run_image_for_module, arm64_image: str  # type: ignore[no-untyped-def]
                    ) -> Container:
    return run_image_for_module(arm64_image)


def test_it_is_an_arm64_image(engine: Engine, arm64_image: str) -> None:
    assert engine("image", "inspect", "--format", "{{.Architecture}}", arm64_image) == "arm64"
    machine = engine("run", "--rm", "--entrypoint", "python", arm64_image, "-c",
                     "import platform; print(platform.machine())", timeout=120)
    assert machine == "aarch64"


def test_contract_and_errors(arm64_container: Container) -> None:
    assert_contract(requests.get(f"{arm64_container.base_url}/", timeout=30))
    assert_json_error(requests.get(f"{arm64_container.base_url}/nope", timeout=30), 404)
    big = requests.post(f"{arm64_container.base_url}/", data=b"x" * (1024 * 1024 + 1),
                        timeout=30)
    assert_json_error(big, 413)  # answered by Nginx itself


def test_processes_are_non_root_and_healthy(arm64_container: Container) -> None:
    tree = processes(arm64_container)
    assert {p["uid"] for p in tree.values()} == {"10001"}
    assert any("nginx" in p["cmdline"] for p in tree.values())
    assert any("gunicorn" in p["cmdline"] for p in tree.values())
    health = arm64_container.exec("python", "-m", "stack.healthcheck")
    assert health.returncode == 0, health.stderr


def test_graceful_stop(run_container, arm64_image: str) -> None:
    server = run_container(image=arm64_image)
    assert server.stop(timeout=20) == 0


def test_size_bounds(engine: Engine, arm64_image: str) -> None:
    assert_within_size_budget(engine, arm64_image)


def test_one_manifest_holds_both_architectures(engine: Engine, image: str, arm64_image: str,
                                               require: Callable[[object, str], None]) -> None:
    require(engine.command == "podman", "manifest lists are made with podman here")
    engine("manifest", "rm", MANIFEST, check=False)
    engine("manifest", "create", MANIFEST)
    try:
        for member in (image, arm64_image):
            engine("manifest", "add", MANIFEST, f"containers-storage:{member}")
        listed = json.loads(engine("manifest", "inspect", MANIFEST))
    finally:
        # Not kept: once a member is rebuilt and its old image removed, Podman
        # 4.3 fails every `podman images` and build on the list's missing instance.
        engine("manifest", "rm", MANIFEST, check=False)
    platforms = {(m["platform"]["os"], m["platform"]["architecture"])
                 for m in listed["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
