"""Where the CPU goes: each process's user and system CPU per request under load.

    python -m bench.cpu stack [--variant "THREADS=2"] [--route root|page|io] [--connections 64]

Runs one setup (a name in bench/setups.py: stack, incumbent, stack_page, ...)
under wrk and reads every process's CPU time from the host's /proc before and
after, exited children's included (a worker replaced meanwhile counts in its
parent). Gunicorn's workers also say how many sockets each holds, sampled during
the load: how evenly Nginx's kept-alive connections are spread over them.
Markdown on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness.engine
from bench.compare import ROUTES
from bench.load import wrk
from bench.setups import IO_SETUPS, SETUPS, TAG, build, build_others, containers, run, with_settings
from harness.paths import ROOT
from harness.procfs import processes
from stack.procfs import stat

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
SAMPLES = 3


def cpu_ticks(container: Any) -> Counter[tuple[str, str]]:
    """(process, user|system) -> clock ticks, children that have exited included."""
    ticks: Counter[tuple[str, str]] = Counter()
    for pid, process in processes(container).items():
        try:
            used = stat(pid)
        except OSError:
            continue
        name = " ".join(process["cmdline"].split()[:4])[:60]
        ticks[(name, "user")] += used.utime
        ticks[(name, "system")] += used.stime
    return ticks


def sockets_per_worker(container: Any) -> list[int]:
    tree = processes(container)
    gunicorn = {pid for pid, p in tree.items() if "gunicorn" in p["cmdline"]}
    counts = []
    for pid in sorted(p for p in gunicorn if int(tree[p]["ppid"]) in gunicorn):
        fds = Path(f"/proc/{pid}/fd").iterdir()
        counts.append(sum(1 for fd in fds if os.readlink(fd).startswith("socket:")))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("setup")
    parser.add_argument("--variant", default="", help='settings as "KEY=VALUE KEY=VALUE"')
    parser.add_argument("--route", choices=ROUTES, default="root")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args(argv)
    engine = harness.engine.chosen()
    known = {s.name: s for s in with_settings(SETUPS + IO_SETUPS, args.variant.split())}
    path = ROUTES[args.route][3]
    build(engine, TAG, ROOT)
    build_others(engine, SETUPS)
    with containers(engine) as started:
        container = run(engine, known[args.setup], started).container
        wrk(container.port, args.connections, 1, path)  # warm up
        before = cpu_ticks(container)
        result: dict[str, Any] = {}
        load = threading.Thread(target=lambda: result.update(
            wrk(container.port, args.connections, args.seconds, path)))
        load.start()
        spread = []
        for _ in range(SAMPLES):
            time.sleep(args.seconds / (SAMPLES + 1))
            spread.append(sockets_per_worker(container))
        load.join()
        after = cpu_ticks(container)
    requests = result["requests"]
    print(f"`python -m bench.cpu {args.setup} --variant {args.variant!r} --route {args.route} "
          f"--connections {args.connections} --seconds {args.seconds}`, "
          f"{time.strftime('%Y-%m-%d')}: {result['rps']:,.0f} req/s, "
          f"p99 {result['latency_ms']['p99']} ms\n")
    print("| Process | user µs/request | system µs/request |\n|---|---:|---:|")
    names = sorted({name for name, _ in after})
    total = {"user": 0.0, "system": 0.0}
    for name in names:
        row = {kind: (after[(name, kind)] - before[(name, kind)]) * TICK_US / requests
               for kind in total}
        if row["user"] + row["system"] < 0.05:
            continue
        total = {kind: total[kind] + row[kind] for kind in total}
        print(f"| `{name}` | {row['user']:.1f} | {row['system']:.1f} |")
    print(f"| all | {total['user']:.1f} | {total['system']:.1f} |")
    if any(spread):
        print(f"\nSockets per Gunicorn worker during the load: {spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
