"""The image: how every build is made, its tag, and how it is run hardened or cut down."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.deployfiles import HAPROXY_DIR
from harness.engine import Engine
from harness.paths import ROOT
from harness.variants import DEFAULT, chosen

# The variant the image layers build (VARIANT=py3.14; the default's build
# arguments are the Dockerfile's own).
VARIANT = chosen()
# IMAGE_TAG: so that two checkouts testing at once do not tag over each other's image.
IMAGE_TAG = os.environ.get("IMAGE_TAG") or (
    "localhost/flask-stack:test" + ("" if VARIANT == DEFAULT else f"-{VARIANT.name}"))
# What the image copies into /srv; the stack layer copies likewise.
RUNTIME_FILES = ("app", "nginx", "stack", "supervisord.conf")
# The lock files the image installs into its one venv: the stack's, then the app's.
LOCKS = (ROOT / "stack" / "requirements.txt", ROOT / "app" / "requirements.txt")
# The two images a project of its own builds on (examples/external's Dockerfile
# names them; they are VARIANT's), and that project.
BUILDER_TAG, RUNTIME_TAG = "flask-stack:builder", "flask-stack:runtime"
EXTERNAL = ROOT / "examples" / "external"
EXTERNAL_LOCKS = (LOCKS[0], EXTERNAL / "requirements.txt")
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


def version() -> str:
    """The stack's version: the Dockerfile's ARG VERSION, its one place."""
    found = re.search(r"^ARG VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    if not found:
        raise ValueError("the Dockerfile has no ARG VERSION=...")
    return found[1]


def locked(locks: tuple[Path, ...] = LOCKS) -> dict[str, str]:
    """Every distribution the locks pin, by its name as written there: its version."""
    return {name: version for lock in locks
            for name, version in re.findall(r"^([A-Za-z0-9._-]+)==([^ ;]+)", lock.read_text(),
                                            re.M)}


def build_image(engine: Engine, tag: str, target: str | None = None,
                platform: str | None = None, base_image: str | None = None,
                context: Path = ROOT, no_cache: bool = False,
                build_args: dict[str, str] | None = None, dockerfile: Path | None = None) -> str:
    """Build a target of the Dockerfile (or of `dockerfile`) the way every test build is made."""
    args = ["build", "--tag", tag]
    if dockerfile:
        args += ["--file", str(dockerfile)]
    if no_cache:
        args.append("--no-cache")
    if target:
        args += ["--target", target]
    if platform:
        args += ["--platform", platform]
    if engine.command == "podman":
        args += ["--format", "docker"]  # Podman's OCI format would drop HEALTHCHECK
    # The stack's Dockerfile (a context with the stack's files: this repository,
    # an example's) builds VARIANT, unless the caller names its own (the release).
    variant_args = VARIANT.build_args if VARIANT != DEFAULT and (context / "stack").is_dir() else {}
    build_args = {**variant_args, **(build_args or {})}
    base_image = base_image or os.environ.get("BASE_IMAGE")
    if base_image:
        build_args["BASE_IMAGE"] = base_image
    args += [f"--build-arg={name}={value}" for name, value in build_args.items()]
    if os.environ.get("PIP_CERT"):
        args += ["--secret", f"id=ca_bundle,src={os.environ['PIP_CERT']}"]
    engine(*args, str(context), timeout=1800)
    return tag


def build_balancer(engine: Engine, tag: str) -> str:
    """The load balancer's image (deploy/haproxy), as compose.yaml builds it; the
    build itself runs `haproxy -c` on the config."""
    return build_image(engine, tag, context=HAPROXY_DIR, dockerfile=HAPROXY_DIR / "Containerfile")

@contextmanager
def created(engine: Engine, image: str) -> Iterator[str]:
    """A container of the image, created and never started (an image without a
    shell is read this way), removed afterwards; its id."""
    cid = engine("create", image)
    try:
        yield cid
    finally:
        engine("rm", cid)


def export(engine: Engine, image: str, archive: Path) -> Path:
    """The image's whole file system, as one tar."""
    with created(engine, image) as cid:
        engine("export", "--output", str(archive), cid)
    return archive


def copy_out(engine: Engine, image: str, path: str, destination: Path) -> Path:
    """A file or directory of the image, copied to destination."""
    with created(engine, image) as cid:
        engine("cp", f"{cid}:{path}", str(destination))
    return destination
