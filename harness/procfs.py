"""Processes as the host's /proc shows them, a container's included (read by
stack.procfs, the one reader of /proc's files)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from harness.containers import Container
from stack.procfs import cmdline, stats

__all__ = ["cmdline", "descendants", "main_pid", "nginx_workers", "processes", "pss_mib",
           "stats"]


class ProcUnreadable(RuntimeError):
    """/proc could not tell what was asked: a figure read from it would be a lie."""


def descendants(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for process in stats():
        children.setdefault(process.ppid, []).append(process.pid)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def main_pid(server: object) -> int:
    """The entrypoint's pid as the host sees it, for a local stack or a container."""
    process = getattr(server, "process", None)
    return process.pid if process else int(server.inspect("{{.State.Pid}}"))  # type: ignore[attr-defined]


def processes(container: Container) -> dict[int, dict[str, str]]:
    """A container's process tree: pid -> uid, ppid, name, cmdline."""
    found = {}
    for pid in descendants(int(container.inspect("{{.State.Pid}}"))):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = cmdline(pid)
        except OSError:
            continue
        fields = dict(re.findall(r"^(Uid|PPid|Name):\s+(\S+)", status, re.M))
        found[pid] = {"uid": fields["Uid"], "ppid": fields["PPid"], "name": fields["Name"],
                      "cmdline": command}
    return found


def nginx_workers(server: object) -> list[int]:
    """The Nginx worker processes of a local stack or a container."""
    found = []
    for pid in descendants(main_pid(server)):
        with contextlib.suppress(OSError):
            if cmdline(pid).startswith("nginx: worker process"):
                found.append(pid)
    return found


def pss_mib(pids: list[int]) -> float:
    """Sum of PSS over processes: pages they share are counted once. A process
    whose smaps_rollup cannot be read fails: 0 would pass for little memory."""
    if not pids:
        raise ProcUnreadable("no processes to measure")
    total_kib = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError as error:
            raise ProcUnreadable(f"/proc/{pid}/smaps_rollup: {error}") from error
        (pss,) = re.findall(r"^Pss:\s+(\d+) kB", rollup, re.M)
        total_kib += int(pss)
    return round(total_kib / 1024, 2)
