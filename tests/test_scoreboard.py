"""The Gunicorn scoreboard and the metrics read from it, as processes use them
(stack/scoreboard.py, stack/metrics.py): a thousand replaced workers later, it
is the same size and a scrape as quick as with none."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from stack.metrics import Metrics
from stack.scoreboard import SIZE, Scoreboard

pytestmark = pytest.mark.app

SCRAPE_BUDGET_SECONDS = 0.05


def metrics(board: Scoreboard, tmp_path: Path) -> Metrics:
    return Metrics(board, str(tmp_path / "no-nginx.sock"), threads=8,
                   versions={"version": "test"}, dropped_lines=lambda: 0)


def scrape_seconds(found: Metrics) -> float:
    """The median of five: collection and exposition, as the endpoint does them."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        generate_latest(found.registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_a_thousand_replacements_leave_it_as_small_and_as_quick(tmp_path: Path) -> None:
    path = tmp_path / "scoreboard"
    master = Scoreboard(str(path), create=True)
    found = metrics(Scoreboard(str(path)), tmp_path)  # PID 1's view of the same file
    for request in range(200):  # requests in every series the access log would give
        found.observe({"method": "GET", "status": 200, "route": f"/r{request % 20}",
                       "duration": 0.01, "bytes": 10})
    alive: dict[int, int] = {}  # pid -> slot
    causes = ["recycled", "timeout", "crashed", "stopped"]
    for worker in range(1000):
        slot = master.claim(set(alive.values()))
        master.started(slot, 10_000 + worker)
        alive[10_000 + worker] = slot
        master.busy(slot, 3)
        if len(alive) > 4:  # the oldest goes, as MAX_REQUESTS would have it
            pid = min(alive)
            cause = causes[pid % 4]
            if cause != "crashed":  # a crashed worker says nothing
                master.exiting(alive[pid], cause)
            master.reaped(alive.pop(pid))
    assert path.stat().st_size == SIZE
    counted = Scoreboard(str(path)).read()
    assert len(counted.workers) == 4 and set(counted.workers.values()) == {3}
    assert counted.replacements == {cause: 249 for cause in ("recycled", "timeout", "crashed")}
    assert scrape_seconds(found) <= SCRAPE_BUDGET_SECONDS
    exposed = generate_latest(found.registry)
    assert b'gunicorn_worker_replacements_total{cause="crashed"} 249.0' in exposed


def test_a_new_master_keeps_the_counts_and_forgets_the_workers(tmp_path: Path) -> None:
    path = str(tmp_path / "scoreboard")
    first = Scoreboard(path, create=True)  # PID 1, once per run
    slot = first.claim(set())
    first.started(slot, os.getpid())
    first.exiting(slot, "recycled")
    first.reaped(slot)
    first.started(first.claim(set()), 4242)  # alive when its master was killed
    second = Scoreboard(path)  # the master Supervisord started again
    second.clear_slots()
    reading = second.read()
    assert reading.workers == {}
    assert reading.replacements["recycled"] == 1


def test_a_stopped_worker_replaces_nothing(tmp_path: Path) -> None:
    board = Scoreboard(str(tmp_path / "scoreboard"), create=True)
    slot = board.claim(set())
    board.started(slot, 1)
    board.exiting(slot, "stopped")
    assert board.reaped(slot) is None
    slot = board.claim(set())
    board.started(slot, 2)
    assert board.reaped(slot, aborted=True) == "timeout"  # a sync worker the master killed
    assert board.read().replacements == {"recycled": 0, "timeout": 1, "crashed": 0}


def test_a_retiring_worker_is_not_balanced_against(tmp_path: Path) -> None:
    """A worker past MAX_REQUESTS lingers on its last kept-alive connections:
    the others, holding more, must go on taking work, not wait for it."""
    board = Scoreboard(str(tmp_path / "scoreboard"), create=True)
    slots = [board.claim(set()), board.claim({0}), board.claim({0, 1})]
    for slot, (pid, held) in zip(slots, ((11, 20), (12, 18), (13, 2)), strict=True):
        board.started(slot, pid)
        board.connections(slot, held)
    assert board.fewest_connections(slots[0], span=6) == 2
    board.connections(slots[2], None)  # it retires
    assert board.fewest_connections(slots[0], span=6) == 18
    assert board.fewest_connections(slots[1], span=6) == 20
    board.connections(slots[1], None)
    assert board.fewest_connections(slots[0], span=6) is None


def test_workers_retiring_of_their_own_accord_are_counted_until_reaped(tmp_path: Path) -> None:
    """The master forks a replacement while any lingers (stack/workers.py,
    replace_retiring)."""
    board = Scoreboard(str(tmp_path / "scoreboard"), create=True)
    slots = [board.claim(set()), board.claim({0}), board.claim({0, 1})]
    for pid, slot in enumerate(slots, start=11):
        board.started(slot, pid)
    assert board.retiring() == 0
    board.exiting(slots[0], "recycled")
    board.exiting(slots[1], "timeout")
    board.exiting(slots[2], "stopped")  # stopped by the master: it replaces nothing
    assert board.retiring() == 2
    board.reaped(slots[0])
    assert board.retiring() == 1
