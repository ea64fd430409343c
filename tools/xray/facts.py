"""What xray finds in an image, as plain data: the JSON output, and what render.py reads.

Sizes are bytes, modes the permission bits of st_mode, paths absolute in the image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Node:
    """One path of the filesystem, after all layers."""

    kind: str  # file, dir, symlink, other
    mode: int
    uid: int
    gid: int
    size: int
    hardlink: bool = False
    elf: str | None = None  # executable, library or other, for ELF files


@dataclass
class Layer:
    """One layer tar of the saved archive."""

    name: str
    tar_bytes: int
    entries: int = 0
    whiteouts: int = 0


@dataclass
class Step:
    """One history entry: a Dockerfile instruction, with or without a layer."""

    created_by: str
    size: int  # as `ENGINE history` counts it
    has_layer: bool = False


@dataclass
class Accounts:
    """The image's own /etc/passwd and /etc/group."""

    users: dict[str, tuple[int, int]]  # name -> uid, gid
    groups: dict[str, tuple[int, list[str]]]  # name -> gid, members

    def user_name(self, uid: int) -> str | None:
        return next((name for name, (u, _) in self.users.items() if u == uid), None)

    def group_name(self, gid: int) -> str | None:
        return next((name for name, (g, _) in self.groups.items() if g == gid), None)


@dataclass
class RunUser:
    """Config.User as the runtime resolves it against the image's accounts."""

    spec: str  # Config.User as written; empty when unset (root)
    uid: int | None  # None: unresolved, and `unresolved` says why
    gid: int
    groups: list[int]
    name: str | None = None  # the uid's /etc/passwd name
    unresolved: str = ""


@dataclass
class Package:
    name: str
    version: str
    architecture: str
    sources: list[str]  # the dpkg files that list it: status, status.d/NAME


@dataclass
class Distribution:
    name: str
    version: str
    location: str  # the directory holding its .dist-info


@dataclass
class Entry:
    path: str
    node: Node


@dataclass
class Writable(Entry):
    why: str  # owner, group, world-writable, sticky...
    below: int = 0  # writable paths under this directory, counted rather than listed


@dataclass
class Totals:
    """After all layers and whiteouts; hard links count once per name, their bytes once."""

    files: int
    hard_links: int
    file_bytes: int
    directories: int
    symlinks: int
    other: int  # devices, FIFOs
    under_runtime_mounts: int  # /dev, /proc, /sys: hidden at run time
    elf_files: int
    elf_executables: int
    elf_libraries: int
    elf_other: int


@dataclass
class Facts:
    image: str  # as asked for; every other fact is of the ID it named then
    id: str
    created: str
    platform: str  # os/architecture
    engine: str
    size: int  # `image inspect` .Size, uncompressed
    archive_bytes: int  # the `ENGINE save` tar
    gzip_bytes: int  # that tar gzip'd: what a registry push would roughly move
    steps: list[Step]  # in build order
    layers: list[Layer]  # the archive's, lowest first
    config: dict[str, Any]  # the image config, with Healthcheck wherever the engine put it
    user: RunUser
    accounts: Accounts
    dpkg_sources: list[str]  # where the package list was read
    packages: list[Package]  # installed
    other_packages: list[str]  # recorded in another state, with that state
    distributions: list[Distribution]
    setuid: list[Entry]  # setuid or setgid files
    setgid_dirs: list[str]
    writable: list[Writable]  # by the runtime user or by anyone
    # The layer tars' own `/` when the runtime user could not search it; the engine's
    # root mount decides `/` at run time.
    unsearchable_root: int | None
    totals: Totals
    seconds: float  # how long gathering took

    def paired(self) -> bool:
        """Whether the steps that made a layer match the archive's layer tars, in order."""
        return sum(step.has_layer for step in self.steps) == len(self.layers)

    def json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"
