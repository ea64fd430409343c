"""Where one Gunicorn worker spends its CPU under load, by part of the request path.

    python -m bench.profile [--route root|page] [--seconds 10] [--connections 64]

The stack's image runs the route (GET / or the real page) under wrk while
py-spy (from PyPI) samples one of its workers from the host, without stopping
it (the samples of the thread holding the GIL: CPU spent in Python). Each
sample is put down to the innermost frame of its stack that belongs
to a part: Gunicorn's HTTP parser, the WSGI environ, the app (Flask, Werkzeug,
Jinja, the app's own code), writing the response, the stack's own wrapper, or
the hand-off between the worker's threads; a frame of the standard library
counts for the part that called it. Markdown on stdout (docs/performance.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import harness.engine
from bench import log
from bench.compare import ROUTES
from bench.load import wrk
from bench.setups import SETUPS, TAG, build, build_others, containers, run
from harness.paths import ROOT
from harness.procfs import processes

# A frame's part, from its file (py-spy's "function (file:line)"); first match wins.
PARTS = (
    ("the stack's wrapper", ("/stack/wsgi.py", "/stack/workers.py", "/stack/logformat.py")),
    ("WSGI environ", ("gunicorn/http/wsgi.py:create", "gunicorn/http/wsgi.py:default_environ",
                      "gunicorn/http/wsgi.py:proxy_environ")),
    ("writing the response", ("gunicorn/http/wsgi.py", "gunicorn/util.py:write")),
    ("HTTP parser", ("gunicorn/http/",)),
    ("the app", ("flask/", "werkzeug/", "jinja2/", "markupsafe/", "itsdangerous/",
                 "/srv/app/", "sqlite3/")),
    ("thread hand-off", ("gunicorn/workers/", "concurrent/futures/", "threading.py",
                         "selectors.py", "queue.py")),
)
OTHER = "other"


def part(stack: str) -> str:
    """The part a sample counts for: its innermost frame that has one."""
    for frame in reversed(stack.split(";")):
        function, _, place = frame.rpartition(" (")
        where = place.rstrip(")").rsplit(":", 1)[0] + ":" + function.strip()
        for name, patterns in PARTS:
            if any(pattern in where for pattern in patterns):
                return name
    return OTHER


def split(raw: str) -> Counter[str]:
    """py-spy's raw (collapsed) output: samples by part."""
    found: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            found[part(stack)] += int(count)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=("root", "page"), default="root")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    engine = harness.engine.chosen()
    stack_name, _, _, path = ROUTES[args.route]
    build(engine, TAG, ROOT)
    build_others(engine, SETUPS)
    setup = next(s for s in SETUPS if s.name == stack_name)
    with containers(engine) as started, tempfile.TemporaryDirectory() as tmp:
        running = run(engine, setup, started)
        wrk(running.container.port, args.connections, 2, path)  # warm up
        tree = processes(running.container)
        gunicorn = {pid for pid, p in tree.items() if "gunicorn" in p["cmdline"]}
        worker = min(pid for pid in gunicorn if int(tree[pid]["ppid"]) in gunicorn)
        out = Path(tmp) / "samples.txt"
        load = threading.Thread(target=wrk, args=(running.container.port, args.connections,
                                                  args.seconds + 2, path), daemon=True)
        load.start()
        log(f"py-spy on worker {worker} for {args.seconds} s")
        subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                        str(worker), "--duration", str(args.seconds), "--rate", "250",
                        "--format", "raw", "--nonblocking", "--gil", "--full-filenames",
                        "--output", str(out)],
                       check=True, capture_output=True, timeout=args.seconds + 60)
        load.join()
        samples = split(out.read_text())
    total = sum(samples.values())
    print(f"`python -m bench.profile --route {args.route} --seconds {args.seconds} "
          f"--connections {args.connections}`: {total:,} samples of one worker\n")
    print("| Part | share of the worker's CPU |")
    print("|---|---:|")
    for name, count in samples.most_common():
        print(f"| {name} | {100 * count / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
