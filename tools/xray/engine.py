"""What xray asks the engine: `image inspect`, `history`, and one streamed `save`."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.engine import Engine
from tools.xray import XrayError
from tools.xray.facts import Step

CHUNK = 1 << 20
GZIP_LEVEL = 6


def inspect(engine: Engine, image: str) -> dict[str, Any]:
    inspected = json.loads(engine("image", "inspect", image))
    if not inspected:
        raise XrayError(f"`{engine.command} image inspect {image}` returned nothing")
    found: dict[str, Any] = inspected[0]
    return found


def parse_size(text: object) -> int:
    """History sizes: an int (podman), a byte string (docker --human=false), or a human one."""
    if isinstance(text, int):
        return text
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    match = re.fullmatch(r"([\d.]+)\s*([kKMGT]?)B?", value)
    if not match:
        return 0
    factor = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match[2]]
    return int(float(match[1]) * factor)


def history(engine: Engine, image: str) -> list[Step]:
    """The image's steps in build order (engines list them newest first)."""
    out = engine("history", "--no-trunc", "--human=false", "--format", "{{json .}}", image)
    # Docker prints one JSON object a line; Podman 4 prints one JSON array for the lot.
    try:
        parsed = json.loads(out)
        entries = parsed if isinstance(parsed, list) else [parsed]
    except json.JSONDecodeError:
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    steps = [
        Step(
            created_by=str(entry.get("CreatedBy", entry.get("createdBy", ""))),
            size=parse_size(entry.get("Size", entry.get("size", 0))),
        )
        for entry in entries
    ]
    return steps[::-1]


class GzipCounter(threading.Thread):
    """Counts the gzip -6 size of what it is fed, on another core: zlib releases the GIL."""

    def __init__(self) -> None:
        super().__init__(name="gzip-counter", daemon=True)
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=32)  # memory stays bounded
        self.size = 0

    def run(self) -> None:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
        while (chunk := self.chunks.get()) is not None:
            self.size += len(compressor.compress(chunk))
        self.size += len(compressor.flush())

    def total(self) -> int:
        self.join()
        return self.size

    def __enter__(self) -> GzipCounter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.chunks.put(None)  # it finishes on its own while the caller goes on


@dataclass
class Saved:
    path: Path
    archive_bytes: int
    gzip: GzipCounter


def save_command(engine: Engine, image: str) -> list[str]:
    # Podman's default archive is also docker-archive, but say so: its OCI one differs.
    if engine.command == "podman":
        return [engine.command, "save", "--format", "docker-archive", image]
    return [engine.command, "save", image]


def stream_save(engine: Engine, image: str, *sinks: Callable[[bytes], object]) -> int:
    """Stream `ENGINE save` once, each chunk to every sink; the archive's bytes."""
    command = save_command(engine, image)
    archive_bytes = 0
    # Streamed rather than through Engine.__call__: the archive is the image's size.
    # stderr to a file: a chatty engine must not block on a full pipe.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        while chunk := process.stdout.read(CHUNK):
            archive_bytes += len(chunk)
            for sink in sinks:
                sink(chunk)
        if process.wait() != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace").strip()
            raise XrayError(f"`{' '.join(command)}` failed: {message}")
    return archive_bytes


def save(engine: Engine, image: str, directory: Path) -> Saved:
    """`ENGINE save` once into a file, teed into the gzip counter, which finishes
    while the layers are read."""
    path = directory / "image.tar"
    with GzipCounter() as counter, path.open("wb") as archive:
        archive_bytes = stream_save(engine, image, archive.write, counter.chunks.put)
    return Saved(path, archive_bytes, counter)


def gzip_size(engine: Engine, image: str) -> int:
    """The gzip -6 size of `ENGINE save`, streamed and kept nowhere (level 9 would
    flatter the image): the report's figure, and the size budget's."""
    with GzipCounter() as counter:
        stream_save(engine, image, counter.chunks.put)
    return counter.total()
