"""Processes as the host's /proc shows them, a container's included."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from harness.containers import Container


def proc_stats() -> Iterator[tuple[int, int, int, str]]:
    """(pid, ppid, session, state) of every process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            yield int(stat.parent.name), int(fields[1]), int(fields[3]), fields[0]


def descendants(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for child, ppid, _, _ in proc_stats():
        children.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def processes(container: Container) -> dict[int, dict[str, str]]:
    """A container's process tree: pid -> uid, ppid, name, cmdline."""
    found = {}
    for pid in descendants(int(container.inspect("{{.State.Pid}}"))):
        proc = Path(f"/proc/{pid}")
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = dict(re.findall(r"^(Uid|PPid|Name):\s+(\S+)", status, re.M))
        found[pid] = {"uid": fields["Uid"], "ppid": fields["PPid"], "name": fields["Name"],
                      "cmdline": cmdline}
    return found


def pss_mib(pids: list[int]) -> float:
    """Sum of PSS over processes: pages they share are counted once."""
    total_kib = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
    return round(total_kib / 1024, 2)
