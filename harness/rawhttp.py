"""A raw HTTP client: bytes sent as they are, one answer read back.

An HTTP client library would normalise or refuse most hostile requests before they
left the machine; tests and tools that must send exactly what they mean use this.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 10.0  # seconds for one exchange; Nginx answers every complete request well within


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (`error` says why); 0: HTTP/0.9, the body alone
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    rest: bytes = b""  # what came after the answer, until the server closed

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def label(self) -> str:
        """How the report counts it: `400`, `HTTP/0.9`, or what went wrong."""
        if self.status is None:
            return f"no answer ({self.error.split(':')[0]})"
        return "HTTP/0.9" if self.status == 0 else str(self.status)


class Reader(io.BufferedReader):
    def close(self) -> None:
        """Kept open when HTTPResponse is done: what follows the answer may be read
        (from the buffer too). The socket's own close ends it."""


def exchange(base_url: str, data: bytes, timeout: float = TIMEOUT, rest: bool = False) -> Answer:
    """Send bytes as they are and read one answer (a HEAD's has no body); with
    `rest`, then read on until the server closes."""
    address = urlsplit(base_url)
    method = data.split(b" ", 1)[0].decode("latin-1")
    sent = ""
    try:
        with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
            try:
                sock.sendall(data)
            except OSError as exc:  # Nginx may answer and close before reading it all
                sent = f" (sending: {exc})"
            start = sock.recv(5, socket.MSG_PEEK | socket.MSG_WAITALL)
            reader = Reader(socket.SocketIO(sock, "rb"))
            if not start:
                return Answer(None, error=f"ConnectionClosed: no answer{sent}")
            if start != b"HTTP/":
                return Answer(0, body=read_rest(reader))
            response = http.client.HTTPResponse(SimpleNamespace(makefile=lambda *_: reader),
                                                method=method)
            response.begin()  # skips a 100 Continue
            answer = Answer(response.status, dict(response.getheaders()), response.read())
            try:
                return replace(answer, rest=read_rest(reader) if rest else b"")
            except OSError as exc:
                return replace(answer, error=f"after the answer: {type(exc).__name__}: {exc}")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, error=f"{type(exc).__name__}: {exc}{sent}")


def read_rest(reader: Reader) -> bytes:
    """Until the server closes: a reset closes too (Nginx resets after some errors)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := reader.read1(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def http_request(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request with Host, the given header lines and Connection: close."""
    head = [line, b"Host: hostile", *headers, b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def get(target: bytes, *headers: bytes) -> bytes:
    return http_request(b"GET " + target + b" HTTP/1.1", *headers)


def chunked(chunks: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def healthy(base_url: str) -> bool:
    return exchange(base_url, get(b"/healthz")).status == 200
