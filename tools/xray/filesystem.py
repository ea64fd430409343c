"""The image's filesystem from a saved docker-archive: layer tars applied in order."""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tools.xray import XrayError
from tools.xray.elf import elf_kind
from tools.xray.facts import Layer, Node, Totals

SKIPPED_TREES = ("/proc", "/sys", "/dev")  # runtime mounts; an image should hold nothing there
DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d/"  # distroless: one stanza file per package
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
METADATA_HEAD = 64 * 1024  # a METADATA's headers sit well inside this


@dataclass
class Filesystem:
    nodes: dict[str, Node] = field(default_factory=dict)
    # Contents of the few files xray reads (accounts, dpkg, METADATA headers).
    contents: dict[str, bytes] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)

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


def apply_layer(fs: Filesystem, layer: IO[bytes], stats: Layer) -> None:
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
            stats = Layer(name, outer.getmember(name).size)
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


def skipped(path: str) -> bool:
    return any(path == tree or path.startswith(tree + "/") for tree in SKIPPED_TREES)


def totals(fs: Filesystem) -> Totals:
    nodes = fs.nodes.values()
    files = [n for n in nodes if n.kind == "file"]
    elf = [n.elf for n in files if n.elf]
    return Totals(
        files=len(files),
        hard_links=sum(n.hardlink for n in files),
        file_bytes=sum(n.size for n in files),
        directories=sum(n.kind == "dir" for n in nodes),
        symlinks=sum(n.kind == "symlink" for n in nodes),
        other=sum(n.kind == "other" for n in nodes),
        under_runtime_mounts=sum(skipped(p) for p in fs.nodes),
        elf_files=len(elf),
        elf_executables=elf.count("executable"),
        elf_libraries=elf.count("library"),
        elf_other=elf.count("other"),
    )
