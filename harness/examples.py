"""The example apps (examples/NAME/): each built into the image as its README
tells a user to, by putting its files in place of app/ and building."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.engine import Engine
from harness.images import IMAGE_TAG, build_image
from harness.paths import ROOT

EXAMPLES = ROOT / "examples"
DOCKERIGNORE = ROOT / ".dockerignore"


def admitted() -> list[str]:
    """The top-level entries .dockerignore lets into the build: it ignores
    everything (`*`), then admits these (`!name`)."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    if patterns[0] != "*":
        raise ValueError(f"{DOCKERIGNORE} no longer starts by ignoring everything (`*`)")
    return sorted({pattern[1:].strip("/").split("/")[0]
                   for pattern in patterns if pattern.startswith("!")})


def make_context(name: str, target: Path) -> Path:
    """This repository's build context in `target`, with app/ holding examples/NAME's
    files. .dockerignore comes along, so the engine leaves out what it always does
    (app/instance, bytecode)."""
    shutil.copy2(DOCKERIGNORE, target)
    for entry in admitted():
        source = EXAMPLES / name if entry == "app" else ROOT / entry
        if source.is_dir():
            shutil.copytree(source, target / entry)
        else:
            shutil.copy2(source, target / entry)
    return target


def tag(name: str) -> str:
    """IMAGE_TAG's repository with -example-NAME, under its tag:
    localhost/flask-stack:test gives localhost/flask-stack-example-NAME:test."""
    repository, _, version = IMAGE_TAG.rpartition(":")
    return f"{repository}-example-{name}:{version}"


def build(engine: Engine, name: str, work_dir: Path) -> str:
    """Build examples/NAME into the image; its tag."""
    if not (EXAMPLES / name).is_dir():
        raise ValueError(f"no example {name!r} in {EXAMPLES}")
    return build_image(engine, tag(name), context=make_context(name, work_dir))
