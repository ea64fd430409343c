"""Load for the benchmark: wrk for throughput, harness.load's open loop for paced latency."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.load import SteadyClient, percentile

LUA = Path(__file__).resolve().parent / "latency.lua"


def wrk(port: int, connections: int, duration: int, path: str = "/",
        headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """`headers` ("Name: value") go with every request, as a browser's would."""
    threads = min(2, connections)  # wrk needs at least one connection per thread
    command = [
        "wrk",
        *(arg for header in headers for arg in ("-H", header)),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if "unable to connect" in result.stdout + result.stderr:
        # The setup is down (a server that died under the load before): every
        # connection an error, and the run goes on for the others.
        return {"connections": connections, "requests": 0, "rps": 0.0, "bytes_per_request": None,
                "latency_ms": dict.fromkeys(("p50", "p99", "p99.9")), "errors": {},
                "non_2xx": 0, "socket_errors": connections,
                "failed": (result.stdout + result.stderr).strip()}
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = raw["errors"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        # What crossed the wire per answer, headers included.
        "bytes_per_request": round(raw["bytes"] / raw["requests"]) if raw["requests"] else None,
        "latency_ms": {k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
        "errors": errors,
        # wrk counts a 4xx/5xx answer as a status error, socket troubles as the rest.
        "non_2xx": errors["status"],
        "socket_errors": sum(v for k, v in errors.items() if k != "status"),
    }


def median_point(points: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per point from several wrk runs: median rate and latencies, all errors.
    Each median keeps its runs' precision: of an even count of runs it is the mean
    of two, which would otherwise print as 125.75550000000001."""
    def median(get: Callable[[dict[str, Any]], float | None], digits: int) -> float | None:
        values = [v for v in map(get, points) if v is not None]  # None: wrk could not connect
        return round(statistics.median(values), digits) if values else None

    return {
        "connections": points[0]["connections"],
        "runs": len(points),
        "requests": sum(p["requests"] for p in points),
        "rps": median(lambda p: p["rps"], 1),
        "rps_runs": [p["rps"] for p in points],
        "bytes_per_request": median(lambda p: p.get("bytes_per_request"), 1),
        "latency_ms": {key: median(lambda p, k=key: p["latency_ms"][k], 3)
                       for key in points[0]["latency_ms"]},
        "non_2xx": sum(p["non_2xx"] for p in points),
        "socket_errors": sum(p["socket_errors"] for p in points),
        "failed": [p["failed"] for p in points if "failed" in p],
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
