"""Benchmark the image against Gunicorn alone, Nginx alone and Flask's development server.

    python bench/run.py [--smoke] [--out DIR] [--env KEY=VALUE ...]

Builds the image, runs the four setups side by side in one run (interleaved, so
the machine's noise hits them alike), and writes results.json, results.md and
results.png into --out. The engine is the ENGINE setting. Every load is on
loopback and bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import harness.engine  # noqa: E402  (the tests' own pieces, not a copy)
from harness.engine import Engine  # noqa: E402
from harness.images import GUNICORN_ALONE, build_image  # noqa: E402
from harness.load import SteadyClient, percentile  # noqa: E402
from harness.procfs import descendants, pss_mib  # noqa: E402
from harness.server import free_port  # noqa: E402

TAG = "localhost/flask-stack:bench"
LUA = BENCH / "latency.lua"
NGINX_CONF = BENCH / "nginx-alone.conf"
PY = "/opt/venv/bin/python"
FLASK_DEV = (
    "import sys; sys.path.insert(0, '/srv/app'); from app import app; "
    "app.run(host='0.0.0.0', port=1300, threaded=True)"
)


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    args: tuple[str, ...]  # run options before the image
    command: tuple[str, ...] = ()  # after the image


SETUPS = (
    Setup("stack", "Image: Nginx + Gunicorn (full stack)", ()),
    Setup("gunicorn", "Gunicorn alone on TCP", *GUNICORN_ALONE),
    Setup(
        "nginx",
        "Nginx alone, fixed JSON",
        ("--entrypoint", "/usr/sbin/nginx", "--volume", f"{NGINX_CONF}:/tmp/bench-nginx.conf:ro"),
        ("-g", "daemon off;", "-c", "/tmp/bench-nginx.conf", "-e", "stderr"),
    ),
    # debug=False: debug=True adds the reloader (a second process) and the debugger.
    Setup(
        "flask_dev",
        "Flask development server (original, debug=False)",
        ("--entrypoint", PY),
        ("-c", FLASK_DEV),
    ),
)


def with_settings(setups: tuple[Setup, ...], settings: list[str]) -> tuple[Setup, ...]:
    """The image's settings (KEY=VALUE) given to the setups that read them."""
    options = tuple(f"--env={item}" for item in settings)
    return tuple(replace(s, args=options + s.args) if s.name in ("stack", "gunicorn") else s
                 for s in setups)


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
IDLE_SETTLE_SECONDS = 2
# wrk holds one descriptor per connection: 1,024 of them pass a soft limit of 1,024.
OPEN_FILES = 4096


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build(engine: Engine, tag: str, context: Path, no_cache: bool = False) -> float:
    """The tests' own build (build_image), timed in seconds."""
    start = time.monotonic()
    build_image(engine, tag, context=context, no_cache=no_cache)
    return time.monotonic() - start


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


# --- containers


def get_status(port: int, timeout: float = 2.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class Running:
    setup: Setup
    id: str
    port: int
    started: float  # monotonic time just before `run`
    up_s: float = 0.0


def run(engine: Engine, setup: Setup, started: list[str]) -> Running:
    port = free_port()
    begin = time.monotonic()
    cid = engine(
        "run", "--detach", f"--publish=127.0.0.1:{port}:1300", *setup.args, TAG, *setup.command
    )
    started.append(cid)
    running = Running(setup, cid, port, begin)
    deadline = begin + 60
    while get_status(port, timeout=1.0) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{setup.name} not up in 60 s:\n{logs(engine, cid)}")
        if engine("inspect", "--format", "{{.State.Running}}", cid) != "true":
            raise RuntimeError(f"{setup.name} exited:\n{logs(engine, cid)}")
        time.sleep(0.01)
    running.up_s = time.monotonic() - begin
    return running


def logs(engine: Engine, cid: str) -> str:
    result = subprocess.run(
        [engine.command, "logs", cid], capture_output=True, text=True, errors="replace",
        timeout=60
    )
    return result.stdout + result.stderr


@contextlib.contextmanager
def containers(engine: Engine) -> Iterator[list[str]]:
    started: list[str] = []
    try:
        yield started
    finally:
        # Podman's rm --force first waits out the stop timeout; the figures are taken already.
        fast = ("--time", "0") if engine.command == "podman" else ()
        for cid in started:
            engine("rm", "--force", *fast, cid, check=False)


def memory(engine: Engine, cid: str) -> dict[str, Any]:
    """Sum of PSS over every process of the container: shared pages counted once."""
    pids = descendants(int(engine("inspect", "--format", "{{.State.Pid}}", cid)))
    return {"pss_mib": pss_mib(pids), "processes": len(pids)}

# --- load


def wrk(port: int, connections: int, duration: int) -> dict[str, Any]:
    threads = min(2, connections)  # wrk needs at least one connection per thread
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = raw["errors"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "latency_ms": {k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
        "errors": errors,
        # wrk counts a 4xx/5xx answer as a status error, socket troubles as the rest.
        "non_2xx": errors["status"],
        "socket_errors": sum(v for k, v in errors.items() if k != "status"),
    }


def median_point(points: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per point from several wrk runs: median rate and latencies, all errors."""
    def median(get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(p) for p in points)

    return {
        "connections": points[0]["connections"],
        "runs": len(points),
        "requests": sum(p["requests"] for p in points),
        "rps": median(lambda p: p["rps"]),
        "rps_runs": [p["rps"] for p in points],
        "latency_ms": {key: median(lambda p, k=key: p["latency_ms"][k])
                       for key in points[0]["latency_ms"]},
        "non_2xx": sum(p["non_2xx"] for p in points),
        "socket_errors": sum(p["socket_errors"] for p in points),
    }


def paced(port: int, rate: int, seconds: int, workers: int = 32) -> dict[str, Any]:
    """Open-loop load at a fixed rate (wrk has none, wrk2 is not in Debian): a
    stall delays the requests behind it and shows in p99."""
    with SteadyClient(f"http://127.0.0.1:{port}", clients=workers, timeout=5,
                      rate=rate, seconds=seconds) as load:
        load.wait(seconds + 30)
        elapsed = time.monotonic() - load.first_due
    outcomes = load.snapshot()
    latencies = [o.latency for o in outcomes]

    def ms(fraction: float) -> float:
        return round(percentile(latencies, fraction) * 1000, 3)

    return {
        "rate": rate,
        "seconds": seconds,
        "requests": len(outcomes),
        "achieved_rps": round(len(outcomes) / elapsed, 1),
        "latency_ms": {"p50": ms(0.50), "p99": ms(0.99), "p99.9": ms(0.999)},
        "errors": sum(o.status != 200 for o in outcomes),
    }


# --- the run


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
            line for line in logs(engine, gunicorn.id).splitlines() if "Listening at" in line
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
                        wrk(item.port, connections, sizes.duration))
        for (name, _), points in runs.items():
            results[name]["load"].append(median_point(points))
        for item in running:
            log(f"paced {item.setup.name} {sizes.paced_rate}/s {sizes.paced_seconds}s")
            results[item.setup.name]["paced"] = paced(
                item.port, sizes.paced_rate, sizes.paced_seconds
            )
        for item in running:
            # The four run side by side here: shared pages are split among them.
            results[item.setup.name]["memory_after_load"] = memory(engine, item.id)
    for attempt in range(sizes.cold_starts):
        for setup in setups:
            with containers(engine) as started:
                item = run(engine, setup, started)
                results[setup.name]["cold_start_s"].append(round(item.up_s, 3))
                if attempt == 0:
                    # Alone on the machine, so no other container shares its pages;
                    # after start-up work has settled.
                    time.sleep(IDLE_SETTLE_SECONDS)
                    results[setup.name]["idle_memory"] = memory(engine, item.id)
        log(f"cold start round {attempt + 1}/{sizes.cold_starts}")
    for entry in results.values():
        entry["cold_start_median_s"] = statistics.median(entry["cold_start_s"])
    return results


def point(setups: dict[str, Any], name: str, connections: int) -> dict[str, Any] | None:
    return next((p for p in setups[name]["load"] if p["connections"] == connections), None)


def ratios(setups: dict[str, Any], concurrency: tuple[int, ...]) -> dict[str, Any]:
    """Stack against each alternative, per concurrency, from this run only."""
    out: dict[str, Any] = {}
    for connections in concurrency:
        stack = point(setups, "stack", connections)
        assert stack is not None
        for other in ("gunicorn", "nginx", "flask_dev"):
            them = point(setups, other, connections)
            assert them is not None
            out[f"c{connections}"] = out.get(f"c{connections}", {})
            out[f"c{connections}"][f"stack_vs_{other}"] = {
                "rps": round(stack["rps"] / them["rps"], 3) if them["rps"] else None,
                "p99": round(stack["latency_ms"]["p99"] / them["latency_ms"]["p99"], 3)
                if them["latency_ms"]["p99"]
                else None,
            }
    return out


def errors_free(load: dict[str, Any] | None) -> bool | None:
    return load["non_2xx"] + load["socket_errors"] == 0 if load else None


def targets(data: dict[str, Any]) -> dict[str, Any]:
    """Issue 4's targets, judged on this run (None: not measured at this size)."""
    setups, c64 = data["setups"], data["ratios"].get("c64", {}).get("stack_vs_gunicorn")
    rebuild = data["rebuild"]["ratio"]
    return {
        "stack_vs_gunicorn_rps_at_64_ge_1.1": c64["rps"] >= 1.1 if c64 else None,
        "stack_p99_at_64_no_worse": c64["p99"] <= 1.0 if c64 else None,
        "zero_errors_at_256": errors_free(point(setups, "stack", 256)),
        "zero_errors_at_1024": errors_free(point(setups, "stack", 1024)),
        "cold_start_median_le_1s": setups["stack"]["cold_start_median_s"] <= 1.0,
        "idle_memory_le_64mib": setups["stack"]["idle_memory"]["pss_mib"] <= 64,
        "rebuild_le_10pct_of_cold": rebuild <= 0.10 if rebuild is not None else None,
    }


def markdown(data: dict[str, Any]) -> str:
    setups, sizes = data["setups"], data["sizes"]
    lines = [
        f"Each load figure is the median of {sizes['rounds']} interleaved wrk runs of "
        f"{sizes['duration']} s (errors: their sum).",
        "",
        "| Setup | Conns | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in setups.items():
        for p in entry["load"]:
            lat = p["latency_ms"]
            lines.append(
                f"| {name} | {p['connections']} | {p['rps']:,.0f} | {lat['p50']} | "
                f"{lat['p99']} | {lat['p99.9']} | {p['non_2xx']} | "
                f"{p['socket_errors']} |"
            )
    lines += [
        "",
        "| Setup | paced p50 / p99 ms | cold start (median) s | idle PSS MiB | "
        "PSS after load MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in setups.items():
        paced_ = entry["paced"]
        lines.append(
            f"| {name} | {paced_['latency_ms']['p50']} / {paced_['latency_ms']['p99']} "
            f"(at {paced_['rate']}/s, {paced_['errors']} errors) | "
            f"{entry['cold_start_median_s']} | {entry['idle_memory']['pss_mib']} | "
            f"{entry['memory_after_load']['pss_mib']} |"
        )
    rebuild, m = data["rebuild"], data["machine"]
    cold = f"{rebuild['cold_build_s']:.1f} s" if rebuild["cold_build_s"] else "not run (smoke)"
    ratio = f"{rebuild['ratio']:.1%}" if rebuild["ratio"] is not None else "n/a"
    lines += [
        "",
        "Targets (issue 4) on this run: " + ", ".join(
            f"{name} {'met' if met else 'NOT met' if met is False else 'not measured'}"
            for name, met in data["targets"].items()) + ".",
        "",
        f"Image size: {data['image']['size_mib']} MiB. Rebuild after a one-line "
        f"app.py change: {rebuild['one_line_change_s']:.1f} s; cold build: {cold}; "
        f"ratio {ratio}.",
        "",
        "| Ratio (stack / other, same run) | req/s | p99 |",
        "|---|---:|---:|",
    ]
    for conc, row in data["ratios"].items():
        for other, r in row.items():
            lines.append(f"| {conc} {other} | {r['rps']} | {r['p99']} |")
    lines += [
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel {m['kernel']}, "
        f"{m['engine']} {m['engine_version']}; load average at start "
        f"{' '.join(m['loadavg_start'])}. Command: `{data['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the PNG
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels: tuple[tuple[str, Callable[[dict[str, Any]], float]], ...] = (
        ("Throughput (req/s)", lambda p: p["rps"]),
        ("p50 latency (ms)", lambda p: p["latency_ms"]["p50"]),
        ("p99 latency (ms)", lambda p: p["latency_ms"]["p99"]),
    )
    for axis, (title, value) in zip(axes, panels, strict=True):
        for name, entry in data["setups"].items():
            xs = [p["connections"] for p in entry["load"]]
            axis.plot(xs, [value(p) for p in entry["load"]], marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")  # Nginx alone is ~30x the others: linear hides them
        axis.set_xlabel("concurrent connections")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    axes[0].legend()
    fig.suptitle(
        f"flask-stack benchmark ({data['machine']['nproc']} CPUs, "
        f"{data['machine']['engine']}; {'smoke' if data['smoke'] else 'full'} run)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        "command": " ".join(["python bench/run.py", *(["--smoke"] if args.smoke else []),
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
    data["setups"] = measure(engine, sizes, with_settings(SETUPS, args.env))
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
