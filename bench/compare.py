"""Compare settings: the stack and Gunicorn alone under each, at one concurrency.

    python bench/compare.py --variant "WEB_CONCURRENCY=4 THREADS=2" \\
                            --variant "WEB_CONCURRENCY=2 THREADS=4" [--connections 64]

How the defaults were chosen (README, Performance). Each round runs every variant
on both setups in turn; the table gives the medians over rounds, and the stack's
idle memory measured alone. The engine is the ENGINE setting. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # bench/run.py's pieces, not a copy
    IDLE_SETTLE_SECONDS,
    ROOT,
    SETUPS,
    TAG,
    build,
    containers,
    log,
    median_point,
    memory,
    run,
    with_settings,
    wrk,
)

import harness.engine  # importing run has put the repository on sys.path

COMPARED = ("stack", "gunicorn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help='settings as "KEY=VALUE KEY=VALUE"; "" for the defaults')
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    engine = harness.engine.chosen()
    build(engine, TAG, ROOT)
    setups = {variant: {s.name: s for s in with_settings(SETUPS, variant.split())
                        if s.name in COMPARED} for variant in args.variant}
    points: dict[tuple[str, str], list] = {}
    idle: dict[str, float] = {}
    for variant, pair in setups.items():
        with containers(engine) as started:
            item = run(engine, pair["stack"], started)
            time.sleep(IDLE_SETTLE_SECONDS)
            idle[variant] = memory(engine, item.id)["pss_mib"]
    for round_ in range(args.rounds):
        for variant, pair in setups.items():
            for name, setup in pair.items():
                log(f"{variant or 'defaults'}: {name} round {round_ + 1}/{args.rounds}")
                with containers(engine) as started:
                    item = run(engine, setup, started)
                    wrk(item.port, args.connections, 1)  # warm up
                    points.setdefault((variant, name), []).append(
                        wrk(item.port, args.connections, args.seconds))
    print(f"`python bench/compare.py {' '.join(f'--variant {v!r}' for v in args.variant)} "
          f"--connections {args.connections} --seconds {args.seconds} "
          f"--rounds {args.rounds}`, {time.strftime('%Y-%m-%d')}\n")
    print("| Settings | stack req/s | Gunicorn alone req/s | ratio | stack p99 ms "
          "| Gunicorn p99 ms | stack idle PSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in setups:
        stack, alone = (median_point(points[(variant, n)]) for n in COMPARED)
        print(f"| {variant or 'defaults'} | {stack['rps']:,.0f} | {alone['rps']:,.0f} | "
              f"{stack['rps'] / alone['rps']:.2f} | {stack['latency_ms']['p99']} | "
              f"{alone['latency_ms']['p99']} | {idle[variant]} |")
    errors = sum(p["non_2xx"] + p["socket_errors"] for ps in points.values() for p in ps)
    print(f"\nErrors in all runs: {errors}. Medians of {args.rounds} runs of "
          f"{args.seconds} s at {args.connections} connections.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
