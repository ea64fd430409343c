"""Every fact about one image, from the engine's answers and one saved archive."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from harness.engine import Engine
from tools.xray.accounts import read_accounts, resolve_user
from tools.xray.engine import history, inspect, save
from tools.xray.facts import Facts, Step
from tools.xray.filesystem import read_archive, totals
from tools.xray.packages import debian_packages, dpkg_sources, python_distributions
from tools.xray.permissions import setgid_dirs, setuid_files, unsearchable_root, writable_paths


def image_config(saved: dict[str, Any], inspected: dict[str, Any]) -> dict[str, Any]:
    """The config blob as saved; Podman's inspect moves Healthcheck out of .Config."""
    config = dict(saved.get("config") or inspected.get("Config") or {})
    if not config.get("Healthcheck") and inspected.get("Healthcheck"):
        config["Healthcheck"] = inspected["Healthcheck"]
    return config


def mark_layers(steps: list[Step], saved_history: list[dict[str, Any]]) -> None:
    """Which steps made a layer: the saved config says; else a step with a size did."""
    if len(saved_history) == len(steps):
        for step, entry in zip(steps, saved_history, strict=True):
            step.has_layer = not entry.get("empty_layer", False)
    else:
        for step in steps:
            step.has_layer = step.size > 0


def gather(image: str, engine: Engine) -> Facts:
    started = time.monotonic()
    inspected = inspect(engine, image)
    # Every later step names the ID: a tag moved by a concurrent build cannot mix two images.
    image_id = str(inspected["Id"])
    steps = history(engine, image_id)
    with tempfile.TemporaryDirectory(prefix="xray-") as directory:
        saved = save(engine, image_id, Path(directory))
        archive = read_archive(saved.path)
    mark_layers(steps, archive.config.get("history") or [])
    fs = archive.fs
    config = image_config(archive.config, inspected)
    accounts = read_accounts(fs)
    user = resolve_user(str(config.get("User") or ""), accounts)
    packages, other_packages = debian_packages(fs)
    return Facts(
        image=image,
        id=image_id,
        created=str(inspected.get("Created", "?")),
        platform="/".join(str(inspected.get(k, "?")) for k in ("Os", "Architecture")),
        engine=engine.command,
        size=int(inspected.get("Size", 0)),
        archive_bytes=saved.archive_bytes,
        gzip_bytes=saved.gzip.total(),
        steps=steps,
        layers=fs.layers,
        config=config,
        user=user,
        accounts=accounts,
        dpkg_sources=dpkg_sources(fs),
        packages=packages,
        other_packages=other_packages,
        distributions=python_distributions(fs),
        setuid=setuid_files(fs),
        setgid_dirs=setgid_dirs(fs),
        writable=writable_paths(fs, user),
        unsearchable_root=unsearchable_root(fs, user),
        totals=totals(fs),
        seconds=round(time.monotonic() - started, 1),
    )
