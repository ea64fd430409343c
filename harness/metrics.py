"""The stack's metrics as a scraper reads them: prometheus_client's own parser."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    seconds: float  # how long the scrape took

    def value(self, name: str, **labels: str) -> float:
        """One sample's value; 0 for a series that does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(value for (sample, keys), value in self.samples.items()
                   if sample == name and wanted <= keys)

    def series(self, name: str) -> Iterable[dict[str, str]]:
        return [dict(keys) for sample, keys in self.samples if sample == name]


def scrape(url: str, timeout: float = 5) -> Scrape:
    started = time.monotonic()
    answer = requests.get(url, timeout=timeout)
    seconds = time.monotonic() - started
    answer.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, seconds)
