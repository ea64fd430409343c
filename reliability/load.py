"""Steady clients that count every request, and slow clients that trickle bytes."""

from __future__ import annotations

import http.client
import selectors
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_REQUESTS_PER_CLIENT = 200_000  # a bound on top of the scenario's time


@dataclass(frozen=True)
class Outcome:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no answer (refused, reset, timed out)
    path: str
    error: str = ""

    @property
    def latency(self) -> float:
        return self.ended - self.started


class SteadyClient:
    """`clients` keep-alive connections sending GET `path` in a loop, as a load
    balancer's traffic does; `interval` paces each one (0: as fast as answered).

        with SteadyClient(url, clients=4) as load: ...; load.outcomes
    """

    def __init__(self, base_url: str, clients: int = 4, path: str = "/",
                 interval: float = 0.0, timeout: float = 15.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.clients, self.path, self.interval, self.timeout = clients, path, interval, timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> SteadyClient:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if self._stop.is_set():
                break
            started, status, error = time.monotonic(), None, ""
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port,
                                                            timeout=self.timeout)
                connection.request("GET", self.path)
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                if connection is not None:
                    connection.close()
                connection = None
            with self._lock:
                self.outcomes.append(Outcome(started, time.monotonic(), status, self.path, error))
            if status is None or self.interval:
                self._stop.wait(self.interval or 0.05)  # no busy loop against a closed port
        if connection is not None:
            connection.close()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


def percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[round(fraction * 1000) - 1]


class Trickle:
    """`count` connections each sending a request one byte per `every` seconds:
    headers that never end, or a body far slower than its Content-Length promises.
    Closed connections are opened again, so the pressure holds for the whole time."""

    def __init__(self, base_url: str, count: int, body: bool, every: float = 1.0) -> None:
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.count, self.every = count, every
        self.head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" if body
                     else b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        self.drip = b"a"
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _open(self, selector: selectors.BaseSelector) -> None:
        try:
            conn = socket.create_connection(self.address, timeout=5)
            conn.sendall(self.head)
        except OSError:
            return
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            while not self._stop.is_set():
                while len(selector.get_map()) < self.count and not self._stop.is_set():
                    self._open(selector)
                for key, _ in selector.select(0):  # answered (408) or closed: drop it
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                for key in list(selector.get_map().values()):
                    try:
                        key.fileobj.send(self.drip)
                    except OSError:
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
                self._stop.wait(self.every)
            for key in list(selector.get_map().values()):
                key.fileobj.close()
