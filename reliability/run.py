"""Run every reliability scenario against the image and write the report.

    python -m reliability.run [--short] [--only NAME ...] [--out reliability]

Builds the image, runs the fault, load and hostile-input scenarios at full size
(--short: the size CI runs), and writes REPORT.md and results.json into --out.
The engine is the ENGINE setting. Every load is on loopback and bounded in
requests and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import harness.engine
from harness.containers import Container, start_container
from harness.images import IMAGE_TAG, build_image
from harness.procfs import processes
from reliability import hostile
from reliability.result import Result
from reliability.scenarios import FULL, SCENARIOS, SHORT, Size, Start

HERE = Path(__file__).resolve().parent


def log(message: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def hostile_input(start: Start, size: Size) -> Result:
    container = start()
    return hostile.run_hostile(container.base_url)


def fuzz(start: Start, size: Size) -> Result:
    container = start()
    return hostile.fuzz(container.base_url, size.examples, lambda: set(processes(container)))


ALL = {**SCENARIOS, "hostile_input": hostile_input, "fuzz": fuzz}


def markdown(results: list[Result], meta: dict[str, Any]) -> str:
    lines = [
        "# Reliability report",
        "",
        f"Made by `{meta['command']}` on {meta['date']} ({meta['machine']}); "
        f"{meta['elapsed_s']} s in all. Do not edit: run the command again.",
        "",
        "| Scenario | Requests sent | Failed | Expected to fail | Faults injected / survived "
        "| Exit codes | Checks |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        passed = sum(r.checks.values())
        verdict = "all pass" if r.ok else "**FAIL**"
        lines.append(
            f"| {r.scenario} | {r.sent:,} | {r.failed:,} | {r.expected_failures:,} | "
            f"{r.faults_injected:,} / {r.faults_survived:,} | "
            f"{', '.join(map(str, r.exit_codes)) or '-'} | {passed}/{len(r.checks)} {verdict} |"
        )
    lines += ["", "## Each scenario", ""]
    for r in results:
        lines += [f"### {r.scenario}", ""]
        lines += [f"- {'pass' if holds else '**FAIL**'}: {name}" for name, holds in
                  r.checks.items()]
        lines += [f"- {name}: {value}" for name, value in r.figures.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the size CI runs")
    parser.add_argument("--only", nargs="+", choices=sorted(ALL), help="these scenarios only")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    size = SHORT if args.short else FULL
    engine = harness.engine.chosen()
    began = time.monotonic()
    log(f"building {IMAGE_TAG}")
    build_image(engine, IMAGE_TAG)
    started: list[Container] = []

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Container:
        container = start_container(engine, IMAGE_TAG, env, args)
        started.append(container)
        return container

    results = []
    try:
        for name in args.only or ALL:
            log(f"{name}")
            result = ALL[name](start, size)
            log(f"{name}: {'ok' if result.ok else 'FAILED'} {result.figures}")
            results.append(result)
            while started:
                started.pop().remove()
    finally:
        for container in started:
            container.remove()
    meta = {
        "command": "python -m reliability.run" + (" --short" if args.short else ""),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
                   f"{engine.command} {engine('--version').split()[-1]}",
        "size": asdict(size),
        "elapsed_s": round(time.monotonic() - began),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "REPORT.md").write_text(markdown(results, meta) + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {**meta, "results": [{k: v for k, v in asdict(r).items() if k != "log"} | {"ok": r.ok}
                             for r in results]}, indent=2) + "\n")
    log(f"done: {args.out / 'REPORT.md'}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
