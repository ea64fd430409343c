"""The benchmark's smoke size: keeps `python -m bench` working, never a timed test.

It checks that every figure is produced for every setup, not how fast anything is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.report import PAIRS
from harness.engine import Engine
from harness.paths import ROOT

SETUPS = ("stack", "stack_log_off", "gunicorn", "nginx", "flask_dev", "incumbent",
          "stack_page", "gunicorn_page", "incumbent_page")
SMOKE_CONCURRENCY = (1, 16)

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def results(engine: Engine, tmp_path_factory: pytest.TempPathFactory,
            require: Callable[[object, str], None]) -> tuple[Path, dict]:
    require(shutil.which("wrk"), "wrk is not installed (Debian package wrk)")
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "ENGINE": engine.command},
        capture_output=True, text=True, timeout=480,
    )
    assert run.returncode == 0, f"python -m bench --smoke failed:\n{run.stdout}\n{run.stderr}"
    return out, json.loads((out / "results.json").read_text())


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


@pytest.mark.timeout(540)
def test_every_figure_for_every_setup(results: tuple[Path, dict]) -> None:
    _, data = results
    assert set(data["setups"]) == set(SETUPS)
    for name in SETUPS:
        entry = data["setups"][name]
        assert [p["connections"] for p in entry["load"]] == list(SMOKE_CONCURRENCY), name
        for point in entry["load"]:
            assert number(point["rps"]) and point["rps"] > 0, (name, point)
            for key in ("p50", "p99", "p99.9"):
                assert number(point["latency_ms"][key]), (name, key, point)
            assert number(point["non_2xx"]) and number(point["socket_errors"])
        assert number(entry["paced"]["latency_ms"]["p99"]) and entry["paced"]["requests"] > 0
        assert len(entry["cold_start_s"]) == 2 and number(entry["cold_start_median_s"])
        assert entry["idle_memory"]["pss_mib"] > 0 and entry["idle_memory"]["processes"] >= 1
        assert entry["memory_after_load"]["pss_mib"] > 0
    assert data["image"]["size_bytes"] > 0
    assert number(data["rebuild"]["one_line_change_s"])
    for key in ("nproc", "cpu_model", "kernel", "engine_version"):
        assert data["machine"][key], key
    for connections in SMOKE_CONCURRENCY:
        ratios = data["ratios"][f"c{connections}"]
        assert set(ratios) == {f"{ours}_vs_{theirs}" for ours, theirs in PAIRS}
        assert all(number(r["rps"]) for r in ratios.values())


@pytest.mark.timeout(540)
def test_gunicorn_alone_listens_on_tcp_only(results: tuple[Path, dict]) -> None:
    _, data = results
    assert data["setups"]["gunicorn"]["tcp_only"], data["setups"]["gunicorn"]["listens"]


@pytest.mark.timeout(540)
def test_stack_has_no_errors_at_smoke_size_on_either_route(results: tuple[Path, dict]) -> None:
    _, data = results
    for name in ("stack", "stack_page"):
        stack = data["setups"][name]
        for point in stack["load"]:
            assert point["non_2xx"] == 0 and point["socket_errors"] == 0, (name, point)
        assert stack["paced"]["errors"] == 0, (name, stack["paced"])


@pytest.mark.timeout(540)
def test_markdown_and_chart_are_written(results: tuple[Path, dict]) -> None:
    out, _ = results
    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in SETUPS)
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
