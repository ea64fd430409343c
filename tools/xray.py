#!/usr/bin/env python3
"""xray: a Markdown report of what a container image holds, read without running it.

    python tools/xray.py IMAGE [--engine docker|podman] [-o FILE]

Sizes, layers, config, Debian packages, Python distributions, setuid/setgid files,
paths the runtime user can write and file totals. The filesystem comes from one
`ENGINE save` archive (layers applied in order, whiteouts included), never from a
container: the image need not have a shell. Standard library only.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import posixpath
import queue
import re
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ENGINES = ("docker", "podman")
CHUNK = 1 << 20
MB = 1_000_000  # decimal, as `docker images` counts
GZIP_LEVEL = 6
SKIPPED_TREES = ("/proc", "/sys", "/dev")  # runtime mounts; an image should hold nothing there
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d/"  # distroless: one stanza file per package
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
METADATA_HEAD = 64 * 1024  # a METADATA's headers sit well inside this
PT_INTERP = 3
# Docker's defaults for a HEALTHCHECK option left unset (0 in the config).
HEALTH_DEFAULTS = {"Interval": "30s", "Timeout": "30s", "StartPeriod": "0s", "Retries": "3"}


class XrayError(Exception):
    """A failure worth one line on stderr rather than a traceback."""


# --- the engine


@dataclass(frozen=True)
class Engine:
    command: str

    def run(self, *args: str, timeout: float = 300) -> str:
        try:
            result = subprocess.run([self.command, *args], capture_output=True, text=True,
                                    timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise XrayError(f"`{self.command} {' '.join(args)}`: {error}") from error
        if result.returncode != 0:
            raise XrayError(f"`{self.command} {' '.join(args)}` failed: {result.stderr.strip()}")
        return result.stdout

    def save_args(self, image: str) -> list[str]:
        # Podman's default archive is also docker-archive, but say so: its OCI one differs.
        if self.command == "podman":
            return [self.command, "save", "--format", "docker-archive", image]
        return [self.command, "save", image]


def detect_engine() -> Engine:
    """Docker if its daemon answers, else Podman: ask the engine, a CLI alone proves nothing."""
    for command in ENGINES:
        try:
            probe = subprocess.run([command, "info"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return Engine(command)
    raise XrayError("no container engine answers `docker info` or `podman info`")


@dataclass
class Step:
    """One history entry: a Dockerfile instruction, with or without a layer."""

    created_by: str
    size: int
    has_layer: bool = False
    layer: LayerStats | None = None


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
    out = engine.run("history", "--no-trunc", "--human=false", "--format", "{{json .}}", image)
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


# --- one save: a temp file for the filesystem, a gzip count on the way


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


@dataclass
class Saved:
    path: Path
    archive_bytes: int
    gzip: GzipCounter


def save(engine: Engine, image: str, directory: Path) -> Saved:
    """Stream `ENGINE save` once into a file, teeing it into the gzip counter."""
    path = directory / "image.tar"
    counter = GzipCounter()
    counter.start()
    archive_bytes = 0
    try:
        with path.open("wb") as archive, tempfile.TemporaryFile() as errors:
            # stderr to a file: a chatty engine must not block on a full pipe.
            process = subprocess.Popen(engine.save_args(image), stdout=subprocess.PIPE,
                                       stderr=errors)
            assert process.stdout is not None
            while chunk := process.stdout.read(CHUNK):
                archive.write(chunk)
                archive_bytes += len(chunk)
                counter.chunks.put(chunk)
            if process.wait() != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()
                raise XrayError(f"`{' '.join(engine.save_args(image))}` failed: {message}")
    finally:
        counter.chunks.put(None)  # the counter finishes while the layers are read
    return Saved(path, archive_bytes, counter)


# --- the filesystem: layers applied in order


@dataclass(slots=True)
class Node:
    kind: str  # file, dir, symlink, other
    mode: int
    uid: int
    gid: int
    size: int
    hardlink: bool = False
    elf: str | None = None  # executable, library or other, for ELF files


@dataclass
class LayerStats:
    name: str
    tar_bytes: int
    entries: int = 0
    whiteouts: int = 0


@dataclass
class Filesystem:
    nodes: dict[str, Node] = field(default_factory=dict)
    # Contents of the few files the report reads (accounts, dpkg, METADATA headers).
    contents: dict[str, bytes] = field(default_factory=dict)
    layers: list[LayerStats] = field(default_factory=list)

    def text(self, path: str) -> str | None:
        node = self.nodes.get(path)
        if node is None or node.kind != "file" or path not in self.contents:
            return None
        return self.contents[path].decode("utf-8", errors="replace")


def wanted(path: str) -> bool:
    if path in ("/etc/passwd", "/etc/group", DPKG_STATUS):
        return True
    if path.startswith(DPKG_STATUS_D):
        return not path.endswith(".md5sums")
    return path.endswith(".dist-info/METADATA")


def normalize(name: str) -> str:
    return posixpath.normpath("/" + name.removeprefix("./"))


def elf_kind(reader: IO[bytes], path: str) -> str | None:
    """ELF or not, by magic; PIE executables and libraries are both ET_DYN, PT_INTERP tells."""
    head = reader.read(64)
    if len(head) < 52 or head[:4] != b"\x7fELF":
        return None
    order = "<" if head[5] == 1 else ">"
    (e_type,) = struct.unpack_from(order + "H", head, 16)
    if e_type == 2:
        return "executable"
    if e_type != 3:
        return "other"
    if re.search(r"\.so(\.|$)", posixpath.basename(path)):
        return "library"  # libc.so.6 has an interpreter too, yet is a library
    # Program header table: offset, entry size and count sit elsewhere in 32-bit ELF.
    if head[4] == 2:
        (phoff,) = struct.unpack_from(order + "Q", head, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
    else:
        (phoff,) = struct.unpack_from(order + "I", head, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
    if phentsize < 4 or phnum == 0:
        return "library"
    reader.seek(phoff)
    table = reader.read(min(phentsize * phnum, 1 << 16))
    for offset in range(0, len(table) - 3, phentsize):
        if struct.unpack_from(order + "I", table, offset)[0] == PT_INTERP:
            return "executable"
    return "library"


def node_of(member: tarfile.TarInfo) -> Node:
    if member.isdir():
        kind = "dir"
    elif member.issym():
        kind = "symlink"
    elif member.isreg() or member.islnk():
        kind = "file"
    else:
        kind = "other"
    return Node(kind, member.mode, member.uid, member.gid, member.size if member.isreg() else 0,
                hardlink=member.islnk())


def apply_layer(fs: Filesystem, layer: IO[bytes], stats: LayerStats) -> None:
    """Apply one layer tar over the lower ones, the way overlayfs would."""
    added: dict[str, Node] = {}
    contents: dict[str, bytes] = {}
    removed: set[str] = set()  # lower paths (and their subtrees) this layer deletes
    opaque: set[str] = set()  # directories whose lower children this layer hides
    with tarfile.open(fileobj=layer, mode="r:*") as tar:
        for member in tar:
            path = normalize(member.name)
            parent, base = posixpath.split(path)
            stats.entries += 1
            if base == OPAQUE:
                stats.whiteouts += 1
                opaque.add(parent)
                continue
            if base.startswith(WHITEOUT):
                stats.whiteouts += 1
                removed.add(posixpath.join(parent, base[len(WHITEOUT):]))
                continue
            node = node_of(member)
            if member.isreg():
                reader = tar.extractfile(member)
                assert reader is not None
                node.elf = elf_kind(reader, path)
                if wanted(path):
                    reader.seek(0)
                    data = reader.read()
                    if path.endswith("/METADATA"):  # only the headers are needed
                        data = data[:METADATA_HEAD].split(b"\n\n", 1)[0]
                    contents[path] = data
            elif member.islnk():
                # A hard link names an earlier member, normally of this same layer.
                target = normalize(member.linkname)
                source = added.get(target) or fs.nodes.get(target)
                if source is not None:
                    node.elf, node.size = source.elf, 0
                if wanted(path) and (target in contents or target in fs.contents):
                    contents[path] = contents.get(target, fs.contents.get(target, b""))
            lower = fs.nodes.get(path)
            if lower is not None and lower.kind == "dir" and node.kind != "dir":
                removed.add(path)  # a non-directory replaces the whole lower tree
            added[path] = node
    if removed or opaque:
        fs.nodes = {path: node for path, node in fs.nodes.items()
                    if not deleted(path, removed, opaque)}
    for path in added:
        fs.contents.pop(path, None)
    fs.nodes.update(added)
    fs.contents.update(contents)


def deleted(path: str, removed: set[str], opaque: set[str]) -> bool:
    if path in removed:
        return True
    while path != "/":
        path = posixpath.dirname(path)
        if path in removed or path in opaque:
            return True
    return False


@dataclass
class Archive:
    config: dict[str, Any]
    fs: Filesystem


def read_archive(path: Path) -> Archive:
    """manifest.json names the config and the layer tars, lowest first."""
    with tarfile.open(path, mode="r:") as outer:
        manifest = json.load(member_file(outer, "manifest.json"))
        if not manifest:
            raise XrayError("the saved archive's manifest.json lists no image")
        entry = manifest[0]
        config = json.load(member_file(outer, entry["Config"]))
        fs = Filesystem()
        for name in entry["Layers"]:
            stats = LayerStats(name, outer.getmember(name).size)
            apply_layer(fs, member_file(outer, name), stats)
            fs.layers.append(stats)
    fs.contents = {path: data for path, data in fs.contents.items() if path in fs.nodes}
    return Archive(config, fs)


def member_file(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        reader = tar.extractfile(name)
    except KeyError as error:
        raise XrayError(f"the saved archive has no {name}") from error
    if reader is None:
        raise XrayError(f"{name} in the saved archive is not a file")
    return reader


# --- what the image says about itself


def image_config(archive: Archive, inspect: dict[str, Any]) -> dict[str, Any]:
    """The config blob as saved; Podman's inspect moves Healthcheck out of .Config."""
    config = dict(archive.config.get("config") or inspect.get("Config") or {})
    if not config.get("Healthcheck") and inspect.get("Healthcheck"):
        config["Healthcheck"] = inspect["Healthcheck"]
    return config


def mark_layers(steps: list[Step], archive: Archive) -> str | None:
    """Pair steps that made a layer with the archive's layer tars; a note if they disagree."""
    saved = archive.config.get("history") or []
    if len(saved) == len(steps):
        for step, entry in zip(steps, saved, strict=True):
            step.has_layer = not entry.get("empty_layer", False)
    else:
        for step in steps:
            step.has_layer = step.size > 0
    with_layer = [step for step in steps if step.has_layer]
    if len(with_layer) != len(archive.fs.layers):
        return (f"{len(with_layer)} steps made a layer but the archive holds "
                f"{len(archive.fs.layers)} layers: entries and whiteouts are not paired.")
    for step, stats in zip(with_layer, archive.fs.layers, strict=True):
        step.layer = stats
    return None


@dataclass
class Accounts:
    users: dict[str, tuple[int, int]]  # name -> uid, gid
    groups: dict[str, tuple[int, list[str]]]  # name -> gid, members

    @classmethod
    def read(cls, fs: Filesystem) -> Accounts:
        users: dict[str, tuple[int, int]] = {}
        for fields in colon_lines(fs.text("/etc/passwd"), 4):
            if fields[2].isdigit() and fields[3].isdigit():
                users.setdefault(fields[0], (int(fields[2]), int(fields[3])))
        groups: dict[str, tuple[int, list[str]]] = {}
        for fields in colon_lines(fs.text("/etc/group"), 3):
            if fields[2].isdigit():
                members = [m for m in (fields[3] if len(fields) > 3 else "").split(",") if m]
                groups.setdefault(fields[0], (int(fields[2]), members))
        return cls(users, groups)

    def user_name(self, uid: int) -> str | None:
        return next((name for name, (u, _) in self.users.items() if u == uid), None)

    def group_name(self, gid: int) -> str | None:
        return next((name for name, (g, _) in self.groups.items() if g == gid), None)

    def owner(self, uid: int, gid: int) -> str:
        return f"{uid}:{gid} ({self.user_name(uid) or '?'}:{self.group_name(gid) or '?'})"


def colon_lines(text: str | None, minimum: int) -> Iterator[list[str]]:
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= minimum and not line.startswith("#"):
            yield fields


@dataclass
class RunUser:
    spec: str
    uid: int | None
    gid: int
    groups: set[int]
    description: str


def resolve_user(spec: str, accounts: Accounts) -> RunUser:
    """Config.User as the runtime resolves it against the image's own /etc/passwd and group."""
    if not spec:  # no USER: uid 0, with or without an /etc/passwd
        return RunUser(spec, 0, 0, {0}, "uid 0 (root), gid 0")
    user_part, _, group_part = spec.partition(":")
    name: str | None
    if user_part.isdigit():
        uid: int | None = int(user_part)
        name = accounts.user_name(int(user_part))
        gid = accounts.users[name][1] if name else 0  # an unknown uid gets gid 0
    elif user_part in accounts.users:
        name = user_part
        uid, gid = accounts.users[user_part]
    else:
        return RunUser(spec, None, 0, set(), f"user `{user_part}` is not in the image's "
                       "/etc/passwd: a container would not start")
    if group_part.isdigit():
        gid = int(group_part)
    elif group_part:
        if group_part not in accounts.groups:
            return RunUser(spec, None, 0, set(), f"group `{group_part}` is not in the image's "
                           "/etc/group: a container would not start")
        gid = accounts.groups[group_part][0]
    groups = {gid}
    if name and not group_part:  # runc adds /etc/group memberships only without a group
        groups |= {g for g, members in accounts.groups.values() if name in members}
    names = f"`{name}`" if name else "no /etc/passwd entry"
    description = (f"uid {uid} ({names}), gid {gid} (`{accounts.group_name(gid) or '?'}`)"
                   + (f", groups {sorted(groups)}" if len(groups) > 1 else ""))
    return RunUser(spec, uid, gid, groups, description)


# --- Debian packages and Python distributions


@dataclass
class Package:
    name: str
    version: str
    architecture: str
    sources: list[str]


def stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation of a multi-line field
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "Package" in fields:
            yield fields


def debian_packages(fs: Filesystem) -> tuple[list[Package], list[str]]:
    """Installed packages from dpkg's status file and status.d; also those in other states."""
    sources = [DPKG_STATUS] if DPKG_STATUS in fs.contents else []
    sources += sorted(p for p in fs.contents if p.startswith(DPKG_STATUS_D))
    packages: dict[tuple[str, str], Package] = {}
    others: list[str] = []
    for source in sources:
        label = "status" if source == DPKG_STATUS else source.removeprefix("/var/lib/dpkg/")
        for fields in stanzas(fs.text(source) or ""):
            status = fields.get("Status", "install ok installed")
            if status.split()[-1:] != ["installed"]:
                others.append(f"{fields['Package']} ({status})")
                continue
            key = (fields["Package"], fields.get("Architecture", ""))
            if key in packages:
                packages[key].sources.append(label)
            else:
                packages[key] = Package(key[0], fields.get("Version", "?"), key[1], [label])
    return sorted(packages.values(), key=lambda p: (p.name, p.architecture)), others


@dataclass
class Distribution:
    name: str
    version: str
    location: str


def python_distributions(fs: Filesystem) -> list[Distribution]:
    found = []
    parser = email.parser.HeaderParser()
    for path in fs.contents:
        if path.endswith(".dist-info/METADATA"):
            headers = parser.parsestr(fs.text(path) or "")
            found.append(Distribution(headers.get("Name", "?"), headers.get("Version", "?"),
                                      posixpath.dirname(posixpath.dirname(path))))
    return sorted(found, key=lambda d: (d.name.lower(), d.location))


# --- permissions


def skipped(path: str) -> bool:
    return any(path == tree or path.startswith(tree + "/") for tree in SKIPPED_TREES)


def permits(node: Node, user: RunUser, bit: int) -> bool:
    """Unix permission check for one class: owner bits if owner, else group, else other."""
    if user.uid == 0:
        return True
    if node.uid == user.uid:
        return bool(node.mode & (bit << 6))
    if node.gid in user.groups:
        return bool(node.mode & (bit << 3))
    return bool(node.mode & bit)


@dataclass
class Writable:
    path: str
    node: Node
    why: str
    below: int = 0


def writable_paths(fs: Filesystem, user: RunUser) -> list[Writable]:
    """Paths the user may write (or anyone may), collapsed under a writable directory."""
    if user.uid is None:
        return []
    default_dir = Node("dir", 0o755, 0, 0, 0)  # a parent no layer names explicitly
    listed: list[Writable] = []
    by_path: dict[str, Writable] = {}
    for path in sorted(fs.nodes):
        node = fs.nodes[path]
        if node.kind == "symlink" or skipped(path):
            continue  # a symlink's own mode means nothing
        by_user = user.uid != 0 and permits(node, user, 2)
        world = bool(node.mode & 0o002)
        if not (by_user or world):
            continue
        reasons = []
        if by_user and node.uid == user.uid:
            reasons.append("owner")
        elif by_user and node.gid in user.groups:
            reasons.append("group")
        if world:
            reasons.append("world-writable")
        if node.kind == "dir" and node.mode & stat.S_ISVTX:
            reasons.append("sticky (tmp-like)")
        ancestors = ancestors_of(path)
        if not all(permits(fs.nodes.get(a, default_dir), user, 1) for a in ancestors[1:]):
            reasons.append("but a parent is not searchable")
        holder = next((by_path[a] for a in ancestors if a in by_path), None)
        if holder is not None:
            holder.below += 1
            continue
        entry = Writable(path, node, ", ".join(reasons))
        listed.append(entry)
        if node.kind == "dir":
            by_path[path] = entry
    return listed


def ancestors_of(path: str) -> list[str]:
    """Ancestors from / down; / comes first so callers can skip it."""
    found = []
    while path != "/":
        path = posixpath.dirname(path)
        found.append(path)
    return found[::-1]


# --- Markdown


def code(text: str) -> str:
    """A code span that survives backticks and, inside tables, pipes."""
    text = " ".join(text.splitlines())
    if not text:
        return "(empty)"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def plain(text: str) -> str:
    return " ".join(text.splitlines()).replace("|", "\\|")


def table(header: Iterable[str], rows: Iterable[Iterable[str]], align: str = "") -> list[str]:
    header = list(header)
    marks = [("---:" if align[i:i + 1] == "r" else "---") for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def megabytes(size: int) -> str:
    return f"{size / MB:.1f}"


def duration(nanoseconds: object, default: str) -> str:
    if not isinstance(nanoseconds, int) or nanoseconds <= 0:
        return f"not set (default {default})"
    seconds = nanoseconds / 1e9
    return f"{seconds:g}s"


def mode_text(mode: int, kind: str) -> str:
    type_bits = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG}
    return f"`{stat.filemode(type_bits.get(kind, 0) | mode)}` ({mode & 0o7777:04o})"


def json_list(value: object) -> str:
    return code(json.dumps(value)) if value else "(none)"


@dataclass
class Report:
    image: str
    engine: Engine
    inspect: dict[str, Any]
    steps: list[Step]
    layer_note: str | None
    saved: Saved
    gzip_bytes: int
    archive: Archive
    started: float

    def markdown(self) -> str:
        sections: list[Callable[[], list[str]]] = [
            self.header, self.size, self.layers, self.config_section, self.packages,
            self.distributions, self.setuid, self.writable, self.totals,
        ]
        lines: list[str] = []
        for section in sections:
            lines += section()
            lines.append("")
        lines.append(f"_Made by tools/xray.py in {time.monotonic() - self.started:.1f} s._")
        return "\n".join(lines) + "\n"

    def header(self) -> list[str]:
        inspect = self.inspect
        platform = "/".join(str(inspect.get(k, "?")) for k in ("Os", "Architecture"))
        rows = [
            ["Image", code(self.image)],
            ["ID", code(str(inspect.get("Id", "?")))],
            ["Created", str(inspect.get("Created", "?"))],
            ["Platform", platform],
            ["Engine", self.engine.command],
        ]
        return [f"# xray: {self.image}", "", *table(["What", "Value"], rows)]

    def size(self) -> list[str]:
        engine = self.engine.command
        size = int(self.inspect.get("Size", 0))
        rows = [
            ["Uncompressed (`image inspect` .Size)", str(size), megabytes(size)],
            [f"Compressed (gzip -{GZIP_LEVEL} of `{engine} save`)",
             str(self.gzip_bytes), megabytes(self.gzip_bytes)],
            [f"Archive (`{engine} save`, uncompressed tar)", str(self.saved.archive_bytes),
             megabytes(self.saved.archive_bytes)],
        ]
        return ["## Size", "", *table(["What", "Bytes", "MB"], rows, "lrr"), "",
                "MB = 10^6 bytes. The compressed size is what a registry push would roughly "
                "move (gzip'd layers)."]

    def layers(self) -> list[str]:
        with_layer = [s for s in self.steps if s.has_layer]
        without = [s for s in self.steps if not s.has_layer]
        rows = []
        for number, step in enumerate(with_layer, 1):
            stats = step.layer
            rows.append([
                str(number), str(step.size), megabytes(step.size),
                str(stats.entries) if stats else "?", str(stats.whiteouts) if stats else "?",
                code(step.created_by),
            ])
        lines = ["## Layers", "",
                 f"{len(with_layer)} layers in build order (size from `{self.engine.command} "
                 "history`; entries and whiteouts from the saved layer tars):", "",
                 *table(["#", "Size (bytes)", "MB", "Entries", "Whiteouts", "Created by"],
                        rows, "rrrrr")]
        if self.layer_note:
            lines += ["", f"Note: {self.layer_note} The archive's layers, lowest first:", ""]
            lines += table(["#", "Tar bytes", "Entries", "Whiteouts"], (
                [str(number), str(layer.tar_bytes), str(layer.entries), str(layer.whiteouts)]
                for number, layer in enumerate(self.archive.fs.layers, 1)), "rrrr")
        lines += ["", f"{len(without)} steps without a layer (metadata only), in build order:",
                  ""]
        lines += table(["Created by"], ([code(s.created_by)] for s in without))
        return lines

    def config_section(self) -> list[str]:
        config = image_config(self.archive, self.inspect)
        health = config.get("Healthcheck") or {}
        user = resolve_user(str(config.get("User") or ""), Accounts.read(self.archive.fs))
        user_cell = (f"{code(user.spec)} → {user.description}" if user.spec
                     else f"not set → root: {user.description}")
        env = config.get("Env") or []
        rows = [
            ["Exposed ports", ", ".join(code(p) for p in sorted(config.get("ExposedPorts") or {}))
             or "(none)"],
            ["User", user_cell],
            ["Entrypoint", json_list(config.get("Entrypoint"))],
            ["Cmd", json_list(config.get("Cmd"))],
            ["Workdir", code(config["WorkingDir"]) if config.get("WorkingDir")
             else "not set (/)"],
            ["Env", "<br>".join(code(e) for e in env) or "(none)"],
            ["Volumes", ", ".join(code(v) for v in sorted(config.get("Volumes") or {}))
             or "(none)"],
            ["Healthcheck test", json_list(health.get("Test")) if health else "(none)"],
            ["Healthcheck interval", duration(health.get("Interval"),
                                              HEALTH_DEFAULTS["Interval"])],
            ["Healthcheck timeout", duration(health.get("Timeout"), HEALTH_DEFAULTS["Timeout"])],
            ["Healthcheck start period", duration(health.get("StartPeriod"),
                                                  HEALTH_DEFAULTS["StartPeriod"])],
            ["Healthcheck retries", str(health["Retries"]) if health.get("Retries")
             else f"not set (default {HEALTH_DEFAULTS['Retries']})"],
            ["Stop signal", code(config["StopSignal"]) if config.get("StopSignal")
             else "not set (SIGTERM)"],
            ["Labels", "<br>".join(code(f"{k}={v}") for k, v in
                                   sorted((config.get("Labels") or {}).items())) or "(none)"],
        ]
        return ["## Config", "", *table(["Field", "Value"], rows)]

    def packages(self) -> list[str]:
        packages, others = debian_packages(self.archive.fs)
        fs = self.archive.fs
        places = ([DPKG_STATUS] if DPKG_STATUS in fs.contents else []) + (
            [DPKG_STATUS_D + "*"] if any(p.startswith(DPKG_STATUS_D) for p in fs.contents)
            else [])
        lines = [f"## Debian packages ({len(packages)})", ""]
        if not packages:
            return [*lines, "None: no `/var/lib/dpkg/status` nor `/var/lib/dpkg/status.d/*`."]
        lines += [f"Installed, from {' and '.join(code(p) for p in places)}:", ""]
        lines += table(["Package", "Version", "Architecture", "From"],
                       ([plain(p.name), plain(p.version), plain(p.architecture),
                         ", ".join(p.sources)] for p in packages))
        if others:
            lines += ["", f"Not installed but recorded: {plain(', '.join(others))}."]
        return lines

    def distributions(self) -> list[str]:
        found = python_distributions(self.archive.fs)
        lines = [f"## Python distributions ({len(found)})", ""]
        if not found:
            return [*lines, "None: no `*.dist-info/METADATA` anywhere."]
        return [*lines, "Every `*.dist-info/METADATA` in the filesystem:", "",
                *table(["Name", "Version", "Location"],
                       ([plain(d.name), plain(d.version), code(d.location)] for d in found))]

    def setuid(self) -> list[str]:
        fs = self.archive.fs
        accounts = Accounts.read(fs)
        special = stat.S_ISUID | stat.S_ISGID
        files = [(p, n) for p, n in sorted(fs.nodes.items())
                 if n.kind == "file" and n.mode & special]
        dirs = [p for p, n in sorted(fs.nodes.items())
                if n.kind == "dir" and n.mode & stat.S_ISGID]
        lines = [f"## setuid and setgid files ({len(files)})", ""]
        if files:
            lines += table(["Path", "Mode", "Owner", "Bits"], (
                [code(p), mode_text(n.mode, n.kind), accounts.owner(n.uid, n.gid),
                 " + ".join(b for b, m in (("setuid", stat.S_ISUID), ("setgid", stat.S_ISGID))
                            if n.mode & m)]
                for p, n in files))
        else:
            lines.append("None.")
        if dirs:
            lines += ["", "setgid directories (new files inherit the group; no privilege): "
                      + ", ".join(code(d) for d in dirs) + "."]
        return lines

    def writable(self) -> list[str]:
        fs = self.archive.fs
        accounts = Accounts.read(fs)
        config = image_config(self.archive, self.inspect)
        user = resolve_user(str(config.get("User") or ""), accounts)
        lines = ["## Writable paths", ""]
        if user.uid is None:
            return [*lines, f"Runtime user unresolved: {user.description}."]
        if user.uid == 0:
            lines += ["The runtime user is root: every path is writable. World-writable ones:",
                      ""]
        else:
            lines += [f"By the runtime user, {user.description}, or by anyone "
                      "(/proc, /sys and /dev left out: the runtime mounts them). "
                      "Paths under a listed writable directory are counted, not listed:", ""]
        found = writable_paths(fs, user)
        if found:
            lines += table(["Path", "Type", "Mode", "Owner", "Why", "Writable below"], (
                [code(w.path), w.node.kind, mode_text(w.node.mode, w.node.kind),
                 accounts.owner(w.node.uid, w.node.gid), w.why, str(w.below) if w.below else ""]
                for w in found))
        else:
            lines.append("None.")
        root = fs.nodes.get("/")
        if root is not None and not permits(root, user, 1):
            # overlayfs takes / from the container's own upper directory, not from a layer.
            lines += ["", f"The image's own `/` entry is {root.mode & 0o7777:04o} (from a layer "
                      "tar); the engine's root mount decides `/` at run time, so it was not "
                      "checked."]
        return lines

    def totals(self) -> list[str]:
        nodes = self.archive.fs.nodes.values()
        files = [n for n in nodes if n.kind == "file"]
        elf = [n.elf for n in files if n.elf]
        rows = [
            ["Regular files", str(len(files))],
            ["of which hard links", str(sum(n.hardlink for n in files))],
            ["Bytes in regular files", f"{sum(n.size for n in files)} "
             f"({megabytes(sum(n.size for n in files))} MB)"],
            ["Directories", str(sum(n.kind == "dir" for n in nodes))],
            ["Symlinks", str(sum(n.kind == "symlink" for n in nodes))],
            ["Other (devices, FIFOs)", str(sum(n.kind == "other" for n in nodes))],
            ["Entries under /dev, /proc, /sys (hidden by runtime mounts)",
             str(sum(skipped(p) for p in self.archive.fs.nodes))],
            ["ELF files", str(len(elf))],
            ["ELF executables", str(elf.count("executable"))],
            ["ELF shared libraries", str(elf.count("library"))],
            ["Other ELF (objects, modules)", str(elf.count("other"))],
        ]
        return ["## Totals", "", *table(["What", "Count"], rows, "lr"), "",
                "After all layers and whiteouts; hard links count once per name, their bytes "
                "once. Executables are ET_EXEC, or ET_DYN with an interpreter and no `.so` name."]


# --- the command


def report(image: str, engine: Engine) -> str:
    started = time.monotonic()
    inspected = json.loads(engine.run("image", "inspect", image))
    if not inspected:
        raise XrayError(f"`{engine.command} image inspect {image}` returned nothing")
    inspect = inspected[0]
    # Every later step names the ID: a tag moved by a concurrent build cannot mix two images.
    image_id = str(inspect["Id"])
    steps = history(engine, image_id)
    with tempfile.TemporaryDirectory(prefix="xray-") as directory:
        saved = save(engine, image_id, Path(directory))
        archive = read_archive(saved.path)
    note = mark_layers(steps, archive)
    return Report(image, engine, inspect, steps, note, saved, saved.gzip.total(), archive,
                  started).markdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xray", description="Markdown report of a container image, read from its archive.")
    parser.add_argument("image", help="image name or ID")
    parser.add_argument("--engine", choices=ENGINES,
                        help="default: docker if `docker info` answers, else podman")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        engine = Engine(args.engine) if args.engine else detect_engine()
        text = report(args.image, engine)
    except XrayError as error:
        print(f"xray: {error}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
