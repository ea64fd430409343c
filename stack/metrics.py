"""The metrics, on METRICS_PORT: Prometheus's text format, or OpenMetrics when the
scraper asks for it (prometheus_client's own exposition), served by a thread of
PID 1, so no process is added and a scrape is answered while every app thread
is busy, and while the container drains. Scrapes never reach port 1300.

- Requests: from the access log's lines, which PID 1 reads anyway (stack/logs.py):
  every request the container answered on port 1300, the app's, the health
  checks', the static files' and Nginx's own errors, each counted once, so the
  histogram's count is the number of access log lines. The names are the
  Prometheus form of OpenTelemetry's HTTP semantic conventions.
- Gunicorn: its scoreboard (stack/scoreboard.py); the master's restarts from
  Supervisord's events (stack/watchdog.py).
- Nginx: its stub_status, on a UNIX socket of the run directory (never on port
  1300), under nginx-prometheus-exporter's names.

Nothing here is kept per process that ends: the scoreboard is one file of fixed
size, and the counters live in PID 1, which lives as long as the container.
"""

from __future__ import annotations

import http.client
import platform
import re
import socket
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from stack.logs import access_fields
from stack.scoreboard import Scoreboard

# OpenTelemetry's advice for http.server.request.duration, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                    7.5, 10.0)
SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
# Methods as OpenTelemetry names them; any other is _OTHER, so a client cannot
# make a series of its own.
METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
                     "TRACE"))
REQUEST_LABELS = ("http_request_method", "http_response_status_code", "http_route")
STUB_STATUS = re.compile(
    r"Active connections:\s*(\d+)\s+server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)"
    r"\s+Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)")
SCRAPE_TIMEOUT_SECONDS = 0.5
# The fields the metrics need, in the order nginx/nginx.conf.j2's log_format
# writes them (escape=json: a quote inside a value is \"); a test keeps the two
# in step.
ACCESS_FIELDS = re.compile(
    rb'"method":"([^"\\]*)","uri":"(?:[^"\\]|\\.)*","route":"((?:[^"\\]|\\.)*)",'
    rb'"status":(\d+),"bytes":(\d+),"request_body_bytes":"(\d*)","duration":([\d.]+),')


class Metrics:
    def __init__(self, board: Scoreboard, status_socket: str, threads: int,
                 versions: dict[str, str], dropped_lines: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, as Nginx timed them.",
            REQUEST_LABELS, buckets=DURATION_BUCKETS, registry=self.registry)
        self.request_size = Histogram(
            "http_server_request_body_size_bytes", "Size of HTTP request bodies.",
            REQUEST_LABELS, buckets=SIZE_BUCKETS, registry=self.registry)
        self.response_size = Histogram(
            "http_server_response_body_size_bytes", "Size of HTTP response bodies.",
            REQUEST_LABELS, buckets=SIZE_BUCKETS, registry=self.registry)
        self.master_restarts = Counter(
            "gunicorn_master_restarts", "Times Supervisord restarted the Gunicorn master.",
            registry=self.registry)
        Info("flask_stack_build", "The stack's version and what it runs.",
             registry=self.registry).info(versions)
        self.registry.register(_Gunicorn(board, threads))
        self.registry.register(_Nginx(status_socket))
        self.registry.register(_Logs(dropped_lines))
        self._series: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def observe_line(self, raw: bytes) -> None:
        """One access log line, as Nginx wrote it: one request."""
        self.observe(request_fields(raw))

    def observe(self, line: dict[str, Any]) -> None:
        """One access log line's fields: one request."""
        method = line.get("method", "")
        labels = (method if method in METHODS else "_OTHER", str(line.get("status", "")),
                  str(line.get("route", "")))
        series = self._series.get(labels)
        if series is None:  # prometheus_client's labels() is a lookup too slow per request
            series = self._series[labels] = (self.duration.labels(*labels),
                                             self.request_size.labels(*labels),
                                             self.response_size.labels(*labels))
        duration, request_size, response_size = series
        duration.observe(float(line.get("duration") or 0))
        request_size.observe(int(line.get("request_body_bytes") or 0))
        response_size.observe(int(line.get("bytes") or 0))

    def serve(self, port: int) -> None:
        """The endpoint, in a thread of this process (prometheus_client's server)."""
        start_http_server(port, addr="0.0.0.0", registry=self.registry)


def request_fields(raw: bytes) -> dict[str, Any]:
    """The fields of an access log line the metrics count. PID 1 reads every
    line, so it finds them by one regular expression, a third of json.loads'
    cost, which stays for a line it does not match."""
    found = ACCESS_FIELDS.search(raw)
    if found is None or b"\\" in found[2]:  # a route with an escape: JSON's to read
        return access_fields(raw)
    method, route, status, sent, received, duration = found.groups()
    return {"method": method.decode(), "route": route.decode(), "status": status.decode(),
            "bytes": sent, "request_body_bytes": received, "duration": duration}


def versions(stack_version: str, nginx_version: str) -> dict[str, str]:
    return {"version": stack_version, "python_version": platform.python_version(),
            "nginx_version": nginx_version, "gunicorn_version": metadata.version("gunicorn")}


class _Gunicorn(Collector):
    def __init__(self, board: Scoreboard, threads: int) -> None:
        self.board, self.threads = board, threads

    def collect(self) -> Iterator[Metric]:
        reading = self.board.read()
        yield GaugeMetricFamily("gunicorn_workers", "Gunicorn workers alive.",
                                len(reading.workers))
        yield GaugeMetricFamily("gunicorn_threads", "Threads of the workers alive.",
                                len(reading.workers) * self.threads)
        yield GaugeMetricFamily("gunicorn_threads_busy", "Threads answering a request.",
                                sum(reading.workers.values()))
        replaced = CounterMetricFamily(
            "gunicorn_worker_replacements", "Workers the master replaced, by cause: "
            "recycled after MAX_REQUESTS, killed at TIMEOUT, or crashed.", labels=["cause"])
        for cause, count in reading.replacements.items():
            replaced.add_metric([cause], count)
        yield replaced


class _Nginx(Collector):
    """stub_status, its counters kept from going backwards when Nginx restarts."""

    FIELDS = ("active", "accepted", "handled", "requests", "reading", "writing", "waiting")

    def __init__(self, status_socket: str) -> None:
        self.status_socket = status_socket
        self.last: dict[str, int] = {}
        self.base: dict[str, int] = dict.fromkeys(("accepted", "handled", "requests"), 0)

    def read(self) -> dict[str, int] | None:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(SCRAPE_TIMEOUT_SECONDS)
                sock.connect(self.status_socket)
                sock.sendall(b"GET /stub_status HTTP/1.0\r\nHost: status\r\n\r\n")
                response = http.client.HTTPResponse(sock)
                response.begin()
                text = response.read().decode()
        except (OSError, http.client.HTTPException):
            return None
        match = STUB_STATUS.search(text)
        return dict(zip(self.FIELDS, map(int, match.groups()), strict=True)) if match else None

    def collect(self) -> Iterator[Metric]:
        values = self.read()
        yield GaugeMetricFamily("nginx_up", "Whether Nginx's stub_status answered.",
                                1 if values else 0)
        if values is None:
            return
        for name in self.base:
            if values[name] < self.last.get(name, 0):  # a new Nginx: its counts start again
                self.base[name] += self.last[name]
            self.last[name] = values[name]
        # As nginx-prometheus-exporter names them; accepted and handled untyped, so
        # that their names stay exactly these in OpenMetrics too.
        for name, doc in (("accepted", "Accepted client connections."),
                          ("handled", "Handled client connections.")):
            yield UnknownMetricFamily(f"nginx_connections_{name}", doc,
                                      values[name] + self.base[name])
        for name, doc in (("active", "Active client connections."),
                          ("reading", "Connections where Nginx reads the request header."),
                          ("writing", "Connections where Nginx writes the response."),
                          ("waiting", "Idle client connections.")):
            yield GaugeMetricFamily(f"nginx_connections_{name}", doc, values[name])
        yield CounterMetricFamily("nginx_http_requests", "Total HTTP requests.",
                                  values["requests"] + self.base["requests"])
        # This scrape's own request to stub_status is one of Nginx's active ones.
        yield GaugeMetricFamily("http_server_active_requests",
                                "HTTP requests Nginx is reading or answering.",
                                max(0, values["reading"] + values["writing"] - 1))


class _Logs(Collector):
    def __init__(self, dropped_lines: Callable[[], int]) -> None:
        self.dropped_lines = dropped_lines

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("flask_stack_log_lines_dropped",
                                  "Log lines lost to a stdout that was full or closed.",
                                  self.dropped_lines())
