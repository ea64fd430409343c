"""Processes as /proc shows them: the one reader of `stat` and `cmdline`, for the
stack (start_nginx) and, from outside, for the tests and tools (harness.procfs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat the stack and its tests read (proc(5))."""

    pid: int
    name: str  # the command name, up to 15 characters
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int  # clock ticks, this process and its waited-for children
    stime: int
    start: int  # clock ticks after boot


def stat(pid: int) -> Stat:
    """OSError if the process is gone."""
    text = (PROC / str(pid) / "stat").read_text()
    # The name may hold spaces and parentheses: split at the first '(' and the last ')'.
    head, _, rest = text.partition(" (")
    name, _, rest = rest.rpartition(") ")
    fields = rest.split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return Stat(int(head), name, fields[0], int(fields[1]), int(fields[2]), int(fields[3]),
                utime + cutime, stime + cstime, int(fields[19]))


def stats() -> Iterator[Stat]:
    """Every process there is now (one that ends meanwhile is left out)."""
    for entry in PROC.glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            yield stat(int(entry.name))


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces ("" for a kernel thread)."""
    return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
        errors="replace").strip()
