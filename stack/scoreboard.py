"""Gunicorn's scoreboard: one small file in the run directory, shared by memory
map, where each worker keeps its slot (its pid, its busy threads and open
connections, why it exits) and the master counts the workers it replaced, by cause. PID 1 reads it
for the metrics (stack/metrics.py).

One fixed-size file, not one per process: a recycled or killed worker's slot is
cleared and reused, so nothing grows with the workers replaced, and reading it
takes the same time after a thousand replacements as after none. PID 1 makes
it before Supervisord starts Gunicorn, so the counters outlive a master that
Supervisord restarts. Each field has one writer (a slot's worker, or the
master), so no lock is needed: readers see each 4-byte or 8-byte field whole.
Only the standard library: PID 1, the master and the workers all import it.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

SLOTS = 256  # WEB_CONCURRENCY's most
# Why a worker went. It says so itself, but for "crashed": then it could not
# (a SIGKILL, a segfault, os._exit in the app), and the master says so.
CAUSES = ("recycled", "timeout", "crashed")
_SAID = ("", "stopped", "recycled", "timeout")  # a slot's cause field: an index into this
HEADER = struct.Struct("<8s3Q")  # magic, replacements by cause (CAUSES' order)
SLOT = struct.Struct("<iIII")  # pid (0: free), busy threads, cause said (_SAID), connections
MAGIC = b"fstack01"
# A slot's connections once its worker takes no more work (recycled, past TIMEOUT,
# stopping): the others must not balance against what it still holds.
RETIRING = 0xFFFFFFFF
SIZE = HEADER.size + SLOTS * SLOT.size


@dataclass(frozen=True)
class Reading:
    workers: dict[int, int]  # pid -> busy threads
    replacements: dict[str, int]  # cause -> workers replaced since the container started


class Scoreboard:
    def __init__(self, path: str, create: bool = False) -> None:
        """Open the file; `create` (PID 1, once per run): make it, zeroed."""
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, SIZE)
            self.map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        if create:
            HEADER.pack_into(self.map, 0, MAGIC, 0, 0, 0)
        elif self.map[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not a scoreboard")

    def _offset(self, slot: int) -> int:
        return HEADER.size + slot * SLOT.size

    # --- the master

    def clear_slots(self) -> None:
        """A master's start: no worker of a previous master is counted (its slots,
        had it crashed, would still name them). The counters stay."""
        self.map[HEADER.size:SIZE] = bytes(SIZE - HEADER.size)

    def claim(self, taken: set[int]) -> int:
        """A slot for a worker about to be forked: the lowest no live worker holds."""
        for slot in range(SLOTS):
            if slot not in taken:
                return slot
        raise RuntimeError(f"more than {SLOTS} Gunicorn workers")

    def reaped(self, slot: int, aborted: bool = False) -> str | None:
        """The master reaped the slot's worker: count why it went (None: it was
        stopped, which replaces nothing) and free the slot. `aborted`: the master
        had killed it at TIMEOUT (a sync worker)."""
        offset = self._offset(slot)
        said = _SAID[SLOT.unpack_from(self.map, offset)[2]]
        cause = said or ("timeout" if aborted else "crashed")
        SLOT.pack_into(self.map, offset, 0, 0, 0, 0)
        if cause == "stopped":
            return None
        field = HEADER.size - 8 * (len(CAUSES) - CAUSES.index(cause))
        (count,) = struct.unpack_from("<Q", self.map, field)
        struct.pack_into("<Q", self.map, field, count + 1)
        return cause

    # --- a worker, in its own slot

    def started(self, slot: int, pid: int) -> None:
        SLOT.pack_into(self.map, self._offset(slot), pid, 0, 0, 0)

    def busy(self, slot: int, threads: int) -> None:
        struct.pack_into("<I", self.map, self._offset(slot) + 4, threads)

    def connections(self, slot: int, count: int | None) -> None:
        """The connections the worker holds; None once it takes no more work."""
        struct.pack_into("<I", self.map, self._offset(slot) + 12,
                         RETIRING if count is None else count)

    def fewest_connections(self, slot: int, span: int) -> int | None:
        """The connections of the other worker taking work that holds fewest, among
        the first `span` slots (a master fills the lowest free ones); None if none.
        A retiring worker is left out: it lingers up to seconds on its last
        connections, and while it did, the others, holding more, took none."""
        view = memoryview(self.map)[HEADER.size:HEADER.size + span * SLOT.size]
        held = [count for index, (pid, _, _, count) in enumerate(SLOT.iter_unpack(view))
                if pid and index != slot and count != RETIRING]
        return min(held) if held else None

    def retiring(self) -> int:
        """Live workers that said they go of their own accord (recycled, past
        TIMEOUT) and still linger: the master forks a replacement at once."""
        view = memoryview(self.map)[HEADER.size:SIZE]
        return sum(1 for pid, _, said, _ in SLOT.iter_unpack(view)
                   if pid and _SAID[said] in ("recycled", "timeout"))

    def exiting(self, slot: int, cause: str) -> None:
        """What the worker says of its exit: stopped, recycled or timeout (said as
        it stops taking work, and again as it exits)."""
        struct.pack_into("<I", self.map, self._offset(slot) + 8, _SAID.index(cause))

    # --- PID 1

    def read(self) -> Reading:
        _, *counts = HEADER.unpack_from(self.map, 0)
        workers = {}
        for slot in range(SLOTS):
            pid, busy, _, _ = SLOT.unpack_from(self.map, self._offset(slot))
            if pid:
                workers[pid] = busy
        return Reading(workers, dict(zip(CAUSES, counts, strict=True)))
