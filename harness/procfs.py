"""Processes as the host's /proc shows them, a container's included (read by
stack.procfs, the one reader of /proc's files)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from harness.containers import Container
from stack.procfs import cmdline, stat, stats

__all__ = ["cmdline", "commands", "descendants", "gunicorn_master", "gunicorn_workers", "main_pid",
           "nginx_master", "nginx_workers", "processes", "pss_mib", "rss_kib", "stats",
           "status"]

GUNICORN = "-m gunicorn"  # in the command line of the master and its workers (supervisord.conf)


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


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status, field by field (OSError if the process is gone)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(re.findall(r"^(\w+):\s*(.*)$", text, re.M))


def rss_kib(pid: int) -> int:
    return int(status(pid)["VmRSS"].split()[0])


def processes(container: Container) -> dict[int, dict[str, str]]:
    """A container's process tree: pid -> uid, ppid, name, cmdline."""
    found = {}
    for pid in descendants(int(container.inspect("{{.State.Pid}}"))):
        try:
            fields = status(pid)
            command = cmdline(pid)
        except OSError:
            continue
        found[pid] = {"uid": fields["Uid"].split()[0], "ppid": fields["PPid"],
                      "name": fields["Name"], "cmdline": command}
    return found


def commands(server: object) -> dict[int, str]:
    """The command line of each process of a local stack or a container."""
    found = {}
    for pid in descendants(main_pid(server)):
        with contextlib.suppress(OSError):
            found[pid] = cmdline(pid)
    return found


def gunicorn_master(server: object) -> int | None:
    """The Gunicorn master: the Gunicorn process whose parent is not one, with
    workers. None while Supervisord restarts it, and for the moment a killed
    master's workers, PID 1's children in a container, take to notice and exit."""
    gunicorns = {}
    for pid, command in commands(server).items():
        with contextlib.suppress(OSError):
            if GUNICORN in command:
                gunicorns[pid] = stat(pid).ppid
    parents = set(gunicorns.values())
    masters = [pid for pid, ppid in gunicorns.items() if ppid not in gunicorns and pid in parents]
    if len(masters) > 1:
        raise ProcUnreadable(f"several Gunicorn masters: {masters}")
    return masters[0] if masters else None


def gunicorn_workers(server: object) -> list[int]:
    """The Gunicorn master's live workers (none while it is restarted)."""
    master = gunicorn_master(server)
    return [found.pid for found in stats()
            if master and found.ppid == master and found.state != "Z"]


def nginx_master(server: object) -> int | None:
    """None while Supervisord restarts it."""
    return next((pid for pid, command in commands(server).items()
                 if command.startswith("nginx: master process")), None)


def nginx_workers(server: object) -> list[int]:
    return [pid for pid, command in commands(server).items()
            if command.startswith("nginx: worker process")]


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
