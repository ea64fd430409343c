"""Compare settings: the stack and Gunicorn alone under each, at one concurrency.

    python -m bench.compare --variant "WEB_CONCURRENCY=4 THREADS=2" \\
                            --variant "WEB_CONCURRENCY=2 THREADS=4" [--connections 64]

How the defaults were chosen (README, Performance). Each round runs every variant
on both setups in turn; the table gives the medians over rounds, and the stack's
idle memory measured alone. The engine is the ENGINE setting. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time

import harness.engine
from bench import log
from bench.load import median_point, wrk
from bench.setups import (
    IDLE_SETTLE_SECONDS,
    SETUPS,
    TAG,
    build,
    containers,
    memory,
    run,
    with_settings,
)
from harness.paths import ROOT

COMPARED = ("stack", "gunicorn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.splitlines()[0])
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
            idle[variant] = memory(item.container)["pss_mib"]
    for round_ in range(args.rounds):
        for variant, pair in setups.items():
            for name, setup in pair.items():
                log(f"{variant or 'defaults'}: {name} round {round_ + 1}/{args.rounds}")
                with containers(engine) as started:
                    port = run(engine, setup, started).container.port
                    wrk(port, args.connections, 1)  # warm up
                    points.setdefault((variant, name), []).append(
                        wrk(port, args.connections, args.seconds))
    print(f"`python -m bench.compare {' '.join(f'--variant {v!r}' for v in args.variant)} "
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
