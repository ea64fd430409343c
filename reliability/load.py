"""Steady clients that count every request, and slow clients that trickle bytes."""

from __future__ import annotations

import http.client
import multiprocessing
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from urllib.parse import urlsplit

MAX_REQUESTS_PER_CLIENT = 200_000  # a bound on top of the scenario's time
READY_TIMEOUT = 10  # seconds for slow clients to open their connections


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
    """Slow clients in a process of their own, so the attacker's work never
    slows the client that measures: `heads` connections sending headers that
    never end and `bodies` sending a body far slower than its Content-Length
    promises, one byte per connection every `every` seconds (spread over the
    interval, as independent clients would). Connections the server closes
    are opened again, so the pressure holds until `off()`.

        with Trickle(url, heads=200, bodies=50) as attack:
            attack.on(); ...; attack.off()
    """

    def __init__(self, base_url: str, heads: int, bodies: int, every: float = 1.0) -> None:
        parts = urlsplit(base_url)
        address = (parts.hostname or "127.0.0.1", parts.port or 80)
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._attack, self._holding, self._idle, self._stop = (context.Event() for _ in range(4))
        self._opened = context.Value("i", 0)
        self._process = context.Process(
            target=_trickle, daemon=True,
            args=(address, [_HEAD] * heads + [_BODY] * bodies, every, self._attack,
                  self._holding, self._idle, self._stop, self._opened))

    @property
    def opened(self) -> int:
        return int(self._opened.value)

    def __enter__(self) -> Trickle:
        self._process.start()  # started once: its start-up is not part of any phase
        if not self._idle.wait(30):
            raise RuntimeError("the slow-client process did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def on(self) -> None:
        """Open every connection; return once they are open, or after READY_TIMEOUT
        if the server stops taking them (the attack is on either way)."""
        self._attack.set()
        self._holding.wait(READY_TIMEOUT)

    def off(self) -> None:
        """Close every connection; return once they are closed."""
        self._attack.clear()
        self._idle.wait(READY_TIMEOUT)


_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
_BODY = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"


def _trickle(address: tuple[str, int], heads: list[bytes], every: float, attack: Event,
             holding: Event, idle: Event, stop: Event, opened: Synchronized) -> None:
    live: dict[int, socket.socket] = {}  # index in `heads` -> its connection

    def open_missing() -> None:
        for slot, head in enumerate(heads):
            if slot in live or not attack.is_set() or stop.is_set():
                continue
            try:
                conn = socket.create_connection(address, timeout=1)
                conn.sendall(head)
            except OSError:
                continue
            live[slot] = conn
            opened.value += 1

    def close_all() -> None:
        while live:
            live.popitem()[1].close()

    while not stop.is_set():
        if not attack.is_set():
            close_all()
            holding.clear()
            idle.set()
            stop.wait(0.01)
            continue
        idle.clear()
        open_missing()
        holding.set()
        for slot in list(live):
            try:
                live[slot].send(b"a")
            except OSError:  # answered (408) or closed: open it again next round
                live.pop(slot).close()
            if stop.wait(every / max(1, len(heads))) or not attack.is_set():
                break
    close_all()
