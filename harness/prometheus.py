"""A real Prometheus (Debian's `prometheus`, the server) as a local process on
loopback, scraping the stack with deploy/prometheus/'s own configuration and
rules (only the target and the intervals are the test's), and its HTTP API."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from typing import Any

import requests
import yaml

from harness.localprocess import LocalProcess
from harness.paths import ROOT
from harness.server import ServerError

DEPLOY = ROOT / "deploy" / "prometheus"
SCRAPE_SECONDS = 1
UP_SECONDS = 30


@dataclass
class Prometheus(LocalProcess):
    target: str  # host:port of a metrics endpoint
    log_name = "prometheus.log"
    stop_seconds = 15

    def start(self) -> Prometheus:
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": f"{SCRAPE_SECONDS}s",
                            "evaluation_interval": f"{SCRAPE_SECONDS}s"}
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": [self.target]}]
        for rules in config["rule_files"]:
            shutil.copy(DEPLOY / rules, self.work / rules)
        (self.work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.spawn(["prometheus", f"--config.file={self.work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}"])
        deadline = time.monotonic() + UP_SECONDS
        while not self.target_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"Prometheus did not scrape {self.target}:\n{self.logs()}")
            time.sleep(0.2)
        return self

    def target_up(self) -> bool:
        try:
            found = self.query("up")
        except (requests.RequestException, ServerError):
            return False
        return any(item["value"][1] == "1" for item in found)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector (at `at`, Unix time, or now)."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        answer = requests.get(f"{self.base_url}/api/v1/query", params=params, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            raise ServerError(f"{expr}: {body}")
        return body["data"]["result"]

    def scrapes(self, since: float, until: float) -> list[float]:
        """When the target was scraped between the two times (Unix seconds)."""
        found = self.query(f"up[{int(until - since) + 1}s]", at=until)
        return sorted(float(t) for item in found for t, _ in item["values"] if t >= since)
