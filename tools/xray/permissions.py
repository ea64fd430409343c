"""Who may do what: setuid and setgid files, and the paths the runtime user can write."""

from __future__ import annotations

import posixpath
import stat

from tools.xray.facts import Entry, Node, RunUser, Writable
from tools.xray.filesystem import Filesystem, skipped


def setuid_files(fs: Filesystem) -> list[Entry]:
    special = stat.S_ISUID | stat.S_ISGID
    return [Entry(p, n) for p, n in sorted(fs.nodes.items())
            if n.kind == "file" and n.mode & special]


def setgid_dirs(fs: Filesystem) -> list[str]:
    """New files inherit the directory's group: no privilege, but worth seeing."""
    return [p for p, n in sorted(fs.nodes.items()) if n.kind == "dir" and n.mode & stat.S_ISGID]


def permits(node: Node, user: RunUser, bit: int) -> bool:
    """Unix permission check for one class: owner bits if owner, else group, else other."""
    if user.uid == 0:
        return True
    if node.uid == user.uid:
        return bool(node.mode & (bit << 6))
    if node.gid in user.groups:
        return bool(node.mode & (bit << 3))
    return bool(node.mode & bit)


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


def unsearchable_root(fs: Filesystem, user: RunUser) -> int | None:
    """The layer tars' own `/` mode when the user could not search it, else None."""
    root = fs.nodes.get("/")
    if root is None or permits(root, user, 1):
        return None
    return root.mode & 0o7777
