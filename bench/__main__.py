"""Benchmark the image against the incumbent, Gunicorn alone, Nginx alone and Flask's dev server.

    python -m bench [--smoke] [--out DIR] [--env KEY=VALUE ...]

Builds the images, runs the setups (bench/setups.py) side by side in one run
(interleaved, so the machine's noise hits them alike), on GET / and on a real
page, and writes results.json, results.md and results.png into --out. The
engine is the ENGINE setting. Every load is on loopback and bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness.engine
from bench import log
from bench.load import median_point, paced, wrk
from bench.report import chart, markdown, ratios, targets
from bench.setups import (
    IDLE_SETTLE_SECONDS,
    SETUPS,
    TAG,
    Setup,
    build,
    build_others,
    containers,
    memory,
    run,
    with_settings,
)
from harness.engine import Engine
from harness.paths import ROOT

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    duration: int  # seconds per wrk point
    concurrency: tuple[int, ...]
    cold_starts: int
    paced_rate: int  # requests/s
    paced_seconds: int
    cold_build: bool
    rounds: int  # wrk runs per point; the table gives their median


FULL = Sizes(6, (1, 16, 64, 256, 1024), 5, 200, 15, True, 3)
SMOKE = Sizes(2, (1, 16), 2, 100, 2, False, 1)
# wrk holds one descriptor per connection: 1,024 of them pass a soft limit of 1,024.
OPEN_FILES = 4096


def rebuild_times(engine: Engine, cold: bool) -> dict[str, Any]:
    """A one-line app.py change rebuilt with the cache, against a --no-cache build."""
    with tempfile.TemporaryDirectory(prefix="bench-ctx-") as tmp:
        context = Path(tmp) / "repo"
        shutil.copytree(ROOT, context, ignore=shutil.ignore_patterns(".git", "results*"))
        with (context / "app" / "app.py").open("a") as app_py:
            app_py.write(f"# bench: one-line change {time.time()}\n")
        tag = f"{TAG}-rebuild"
        try:
            changed = build(engine, tag, context)
            cold_s = build(engine, tag, context, no_cache=True) if cold else None
        finally:
            engine("rmi", "--force", tag, check=False)
    return {
        "one_line_change_s": changed,
        "cold_build_s": cold_s,
        "ratio": changed / cold_s if cold_s else None,
    }


def machine(engine: Engine) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "engine": engine.command,
        "engine_version": engine("version", "--format", "{{.Client.Version}}"),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[
            0:1
        ],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def measure(engine: Engine, sizes: Sizes, setups: tuple[Setup, ...]) -> dict[str, Any]:
    results: dict[str, Any] = {
        name: {"label": s.label, "load": [], "cold_start_s": []}
        for name, s in ((s.name, s) for s in setups)
    }
    with containers(engine) as started:
        running = [run(engine, setup, started) for setup in setups]
        gunicorn = next(r for r in running if r.setup.name == "gunicorn")
        results["gunicorn"]["listens"] = [
            line for line in gunicorn.container.logs().splitlines() if "Listening at" in line
        ]
        # The command line's --bind must have replaced the config's UNIX socket, not joined it.
        listens = results["gunicorn"]["listens"]
        results["gunicorn"]["tcp_only"] = bool(listens) and not any("unix:" in x for x in listens)
        # Interleaved: each concurrency runs on every setup before the next one,
        # and each round repeats that, so noise lands on all setups alike.
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for round_ in range(sizes.rounds):
            for connections in sizes.concurrency:
                for item in running:
                    log(f"wrk {item.setup.name} c={connections} {sizes.duration}s "
                        f"round {round_ + 1}/{sizes.rounds}")
                    runs.setdefault((item.setup.name, connections), []).append(
                        wrk(item.container.port, connections, sizes.duration))
        for (name, _), points in runs.items():
            results[name]["load"].append(median_point(points))
        for item in running:
            log(f"paced {item.setup.name} {sizes.paced_rate}/s {sizes.paced_seconds}s")
            results[item.setup.name]["paced"] = paced(
                item.container.port, sizes.paced_rate, sizes.paced_seconds
            )
        for item in running:
            # All run side by side here: shared pages are split among them.
            results[item.setup.name]["memory_after_load"] = memory(item.container)
    for attempt in range(sizes.cold_starts):
        for setup in setups:
            with containers(engine) as started:
                item = run(engine, setup, started)
                results[setup.name]["cold_start_s"].append(round(item.up_s, 3))
                if attempt == 0:
                    # Alone on the machine, so no other container shares its pages;
                    # after start-up work has settled.
                    time.sleep(IDLE_SETTLE_SECONDS)
                    results[setup.name]["idle_memory"] = memory(item.container)
        log(f"cold start round {attempt + 1}/{sizes.cold_starts}")
    for entry in results.values():
        entry["cold_start_median_s"] = statistics.median(entry["cold_start_s"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds per figure")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the stack and Gunicorn alone, e.g. THREADS=2")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < OPEN_FILES:
        sys.exit(f"wrk needs {OPEN_FILES} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, hard))  # wrk inherits it
    began = time.monotonic()
    engine = harness.engine.chosen()
    data: dict[str, Any] = {
        "smoke": args.smoke,
        "sizes": sizes.__dict__,
        "command": " ".join(["python -m bench", *(["--smoke"] if args.smoke else []),
                             *(f"--env {item}" for item in args.env)]),
        "machine": machine(engine),
    }
    log(f"building {TAG} with {engine.command}")
    data["image"] = {"tag": TAG, "build_s": round(build(engine, TAG, ROOT), 1)}
    size = int(engine("image", "inspect", "--format", "{{.Size}}", TAG))
    data["image"].update(size_bytes=size, size_mib=round(size / 2**20, 1))
    log(
        "rebuild after a one-line app.py change" + (" and a cold build" if sizes.cold_build else "")
    )
    data["rebuild"] = rebuild_times(engine, sizes.cold_build)
    setups = with_settings(SETUPS, args.env)
    log("building the real page's image and the incumbent's")
    build_others(engine, setups)
    data["setups"] = measure(engine, sizes, setups)
    data["ratios"] = ratios(data["setups"], sizes.concurrency)
    data["targets"] = targets(data)
    data["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    data["elapsed_s"] = round(time.monotonic() - began, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(data))
    chart(data, args.out / "results.png")
    log(f"done in {data['elapsed_s']} s: {args.out}/results.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
