"""Compare settings: the stack and Gunicorn alone under each, beside the incumbent, at one load.

    python -m bench.compare --variant "WEB_CONCURRENCY=4 THREADS=2" \\
                            --variant "WEB_CONCURRENCY=2 THREADS=8" [--connections 64] \\
                            [--route root|page|io]

How the defaults were chosen (docs/performance.md). Each round runs every
variant on both setups in turn, and the incumbent (bench/incumbent/, which no
variant changes) once, on a route: GET / (root), the real page (examples/package's
index) or an I/O-bound one (a 20 ms wait, as for a database or an API). The
table gives the medians over rounds, and the stack's idle memory measured alone.
The engine is the ENGINE setting. Markdown on stdout.
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
    IO_PATH,
    IO_SETUPS,
    SETUPS,
    TAG,
    build,
    build_others,
    containers,
    memory,
    run,
    with_settings,
)
from harness.paths import ROOT


def errors(point: dict) -> int:
    return point["non_2xx"] + point["socket_errors"]


# Each route: the stack's setup, Gunicorn alone's, the incumbent's, and the path wrk asks.
ROUTES = {"root": ("stack", "gunicorn", "incumbent", "/"),
          "page": ("stack_page", "gunicorn_page", "incumbent_page", "/"),
          "io": ("stack_io", "gunicorn_io", "incumbent_io", IO_PATH)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True,
                        help='settings as "KEY=VALUE KEY=VALUE"; "" for the defaults')
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--route", choices=ROUTES, default="root",
                        help="GET / (root), the real page or the I/O-bound route")
    parser.add_argument("--header", action="append", default=[],
                        help='a request header for every request, e.g. "Accept-Encoding: gzip"')
    args = parser.parse_args(argv)
    engine = harness.engine.chosen()
    stack_name, alone_name, incumbent_name, path = ROUTES[args.route]
    build(engine, TAG, ROOT)
    build_others(engine, SETUPS)
    known = SETUPS + IO_SETUPS
    incumbent = next(s for s in known if s.name == incumbent_name)
    setups = {variant: {s.name: s for s in with_settings(known, variant.split())
                        if s.name in (stack_name, alone_name)} for variant in args.variant}
    points: dict[tuple[str, str], list] = {}
    idle: dict[str, float] = {}
    for variant, pair in setups.items():
        with containers(engine) as started:
            item = run(engine, pair[stack_name], started)
            time.sleep(IDLE_SETTLE_SECONDS)
            idle[variant] = memory(item.container)["pss_mib"]
    for round_ in range(args.rounds):
        turns = [(variant, name, setup) for variant, pair in setups.items()
                 for name, setup in pair.items()] + [("", incumbent_name, incumbent)]
        # Each round starts one turn later: no setting always runs first (or
        # last), where the machine's drift would count against it alone.
        shift = round_ % len(turns)
        for variant, name, setup in turns[shift:] + turns[:shift]:
            log(f"{variant or 'defaults'}: {name} round {round_ + 1}/{args.rounds}")
            with containers(engine) as started:
                port = run(engine, setup, started).container.port
                wrk(port, args.connections, 1, path, tuple(args.header))  # warm up
                points.setdefault((variant, name), []).append(
                    wrk(port, args.connections, args.seconds, path, tuple(args.header)))
    reference = median_point(points[("", incumbent_name)])
    print(f"`python -m bench.compare {' '.join(f'--variant {v!r}' for v in args.variant)} "
          f"--connections {args.connections} --seconds {args.seconds} "
          f"--rounds {args.rounds} --route {args.route}"
          f"{''.join(f' --header {h!r}' for h in args.header)}`, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| Settings | stack req/s | Gunicorn alone req/s | stack / incumbent req/s "
          "| stack p99 ms | Gunicorn p99 ms | stack idle PSS MiB | stack bytes/answer "
          "| errors (stack, alone) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant in setups:
        stack, alone = (median_point(points[(variant, n)]) for n in (stack_name, alone_name))
        print(f"| {variant or 'defaults'} | {stack['rps']:,.0f} | {alone['rps']:,.0f} | "
              f"{stack['rps'] / reference['rps']:.2f} | {stack['latency_ms']['p99']} | "
              f"{alone['latency_ms']['p99']} | {idle[variant]} | "
              f"{stack['bytes_per_request']} | {errors(stack)}, {errors(alone)} |")
    print(f"| incumbent (uWSGI design) | {reference['rps']:,.0f} | | 1.00 | "
          f"{reference['latency_ms']['p99']} | | | {reference['bytes_per_request']} | "
          f"{errors(reference)} |")
    print(f"\nMedians of {args.rounds} runs of "
          f"{args.seconds} s at {args.connections} connections.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
