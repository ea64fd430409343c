"""Load on a server: keep-alive clients that record every request, and the one percentile.

The benchmark's paced load and the reliability scenarios' steady clients are
this one generator. Percentiles are nearest-rank (see `percentile`).
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_REQUESTS_PER_CLIENT = 200_000  # a bound on top of the caller's time
HEAD_START = 0.1  # seconds for the clients' threads to start before the first request is due


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic() when sent, or when due in an open loop
    ended: float
    status: int | None  # None: no answer (refused, reset, timed out)
    path: str
    error: str = ""

    @property
    def latency(self) -> float:
        return self.ended - self.started


class SteadyClient:
    """`clients` keep-alive connections sending GET `path`, each request an Outcome.

    Closed loop (no `rate`): each client sends its next request once answered,
    after `interval` (0: at once), until stop(), as a load balancer's traffic does.

    Open loop (`rate` requests/s for `seconds`): each request is due at its slot
    and counts from then, so a stall delays the requests behind it and shows in
    the percentiles (no coordinated omission); wait() returns once all are answered.

        with SteadyClient(url, clients=4) as load: ...; load.snapshot()
    """

    def __init__(self, base_url: str, clients: int = 4, path: str = "/",
                 interval: float = 0.0, timeout: float = 15.0,
                 rate: int = 0, seconds: float = 0.0, new_connections: bool = False,
                 expect: Callable[[bytes], bool] | None = None) -> None:
        """`new_connections`: each request on a connection of its own, as a client
        without keep-alive; `expect`: a 200 whose body it refuses counts as an error."""
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.clients, self.path, self.interval, self.timeout = clients, path, interval, timeout
        self.new_connections, self.expect = new_connections, expect
        self.rate, self._due_total, self._due_taken = rate, round(rate * seconds), 0
        self.first_due = 0.0
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> SteadyClient:
        self.first_due = time.monotonic() + HEAD_START
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait(self, timeout: float) -> None:
        """Wait for the clients to end on their own: an open loop's last request answered."""
        for thread in self._threads:
            thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _next_due(self) -> float | None:
        """When this client's next request is due; None once it is to end."""
        if self._stop.is_set():
            return None
        if not self.rate:
            return time.monotonic()
        with self._lock:
            if self._due_taken >= self._due_total:
                return None
            self._due_taken += 1
            return self.first_due + (self._due_taken - 1) / self.rate

    def _run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            due = self._next_due()
            if due is None:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            status, error = None, ""
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port,
                                                            timeout=self.timeout)
                connection.request("GET", self.path,
                                   headers={"Connection": "close"} if self.new_connections else {})
                response = connection.getresponse()
                body = response.read()
                status = response.status
                if status == 200 and self.expect is not None and not self.expect(body):
                    error = f"unexpected body {body[:120]!r}"
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                if connection is not None:
                    connection.close()
                connection = None
            with self._lock:
                self.outcomes.append(Outcome(due, time.monotonic(), status, self.path, error))
            if not self.rate and (status is None or self.interval):
                self._stop.wait(self.interval or 0.05)  # no busy loop against a closed port
        if connection is not None:
            connection.close()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        """Requests without a 200 or with another answer than expected."""
        return [outcome for outcome in self.snapshot() if outcome.status != 200 or outcome.error]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value that at least `fraction` (0 to 1) of the
    values do not exceed, so always a latency some request had, never one
    interpolated between two; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(round(fraction * len(ordered), 9))  # round: no 99.00000000000001
    return ordered[min(len(ordered), max(1, rank)) - 1]
