"""The benchmark's figures written down: ratios, issues 4 and 14's targets, Markdown, the chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def point(setups: dict[str, Any], name: str, connections: int) -> dict[str, Any] | None:
    return next((p for p in setups[name]["load"] if p["connections"] == connections), None)


# (ours, theirs): the stack on GET / against each alternative, the access log's
# cost, and the real page against the incumbent and Gunicorn alone.
PAIRS = (("stack", "gunicorn"), ("stack", "nginx"), ("stack", "flask_dev"),
         ("stack", "incumbent"), ("stack", "stack_log_off"),
         ("stack_page", "incumbent_page"), ("stack_page", "gunicorn_page"))


def ratios(setups: dict[str, Any], concurrency: tuple[int, ...]) -> dict[str, Any]:
    """Ours against theirs (PAIRS, those both measured), per concurrency, from this run only."""
    out: dict[str, Any] = {}
    for connections in concurrency:
        for ours, other in PAIRS:
            if ours not in setups or other not in setups:
                continue
            stack, them = point(setups, ours, connections), point(setups, other, connections)
            assert stack is not None and them is not None
            out[f"c{connections}"] = out.get(f"c{connections}", {})
            out[f"c{connections}"][f"{ours}_vs_{other}"] = {
                "rps": divide(stack["rps"], them["rps"]),
                "p99": divide(stack["latency_ms"]["p99"], them["latency_ms"]["p99"]),
            }
    return out


def divide(ours: float | None, theirs: float | None) -> float | None:
    """A ratio, None where either side has no figure (a setup that was down)."""
    return round(ours / theirs, 3) if ours and theirs else None


def within(ratio: dict[str, Any] | None, key: str, low: float = 0.0,
           high: float = float("inf")) -> bool | None:
    """A target on a ratio; None where it was not measured."""
    value = ratio.get(key) if ratio else None
    return low <= value <= high if value is not None else None


def errors_free(load: dict[str, Any] | None) -> bool | None:
    return load["non_2xx"] + load["socket_errors"] == 0 if load else None


def targets(data: dict[str, Any]) -> dict[str, Any]:
    """Issues 4's and 14's targets, judged on this run (None: not measured at this size)."""
    setups, at64 = data["setups"], data["ratios"].get("c64", {})
    c64 = at64.get("stack_vs_gunicorn")
    root, page = at64.get("stack_vs_incumbent"), at64.get("stack_page_vs_incumbent_page")
    log = at64.get("stack_vs_stack_log_off")
    rebuild = data["rebuild"]["ratio"]
    idle = {name: entry["idle_memory"]["pss_mib"] for name, entry in setups.items()}
    return {
        # issue 14: against the incumbent, with the access log on
        "root_rps_at_64_ge_0.9x_incumbent": within(root, "rps", low=0.9),
        "root_p99_at_64_le_1.2x_incumbent": within(root, "p99", high=1.2),
        "page_rps_at_64_ge_incumbent": within(page, "rps", low=1.0),
        "page_p99_at_64_le_incumbent": within(page, "p99", high=1.0),
        "idle_memory_le_incumbent": idle["stack"] <= idle["incumbent"]
        if "incumbent" in idle else None,
        "access_log_costs_le_5pct_at_64": within(log, "rps", low=0.95),
        # issue 4
        "stack_vs_gunicorn_rps_at_64_ge_1.1": within(c64, "rps", low=1.1),
        "stack_p99_at_64_no_worse": within(c64, "p99", high=1.0),
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
        "Targets (issues 14 and 4) on this run: " + ", ".join(
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
            axis.plot(xs, [value(p) for p in entry["load"]], marker="o", label=name,
                      linestyle="--" if name.endswith("_page") else "-")
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
