"""A test app of what Nginx must pass on as it is, never compressed again:
/gzipped, an answer the app compressed itself (X-Sent-SHA256 names the bytes it
sent), and /echo, a WebSocket echo (RFC 6455, no extension) written on
Gunicorn's socket, as flask-sock does it, since the image has no WebSocket
package."""

import base64
import gzip
import hashlib
import json
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
CLOSE = 0x8


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    if environ.get("PATH_INFO") == "/echo":
        echo(environ)
    # Hashes: gzip halves them only, so even compressed they are over
    # gzip_min_length, and Nginx would compress them again if it did such a thing.
    records = [hashlib.sha256(str(number).encode()).hexdigest() for number in range(300)]
    body = gzip.compress(json.dumps(records).encode())
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Encoding", "gzip"),
                              ("Content-Length", str(len(body))),
                              ("X-Sent-SHA256", hashlib.sha256(body).hexdigest())])
    return [body]


def echo(environ: dict[str, Any]) -> None:
    """Every frame sent back as it came, until the client's close, echoed too."""
    sock = environ["gunicorn.socket"]
    key = environ["HTTP_SEC_WEBSOCKET_KEY"].encode()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    reader = sock.makefile("rb")
    while (received := read_frame(reader)) is not None:
        first, data = received
        sock.sendall(frame(first, data))
        if first & 0x0F == CLOSE:
            break
    # The connection is the socket's now: Gunicorn closes it without an answer.
    raise StopIteration


def read_frame(reader: BinaryIO) -> tuple[int, bytes] | None:
    """A client's frame (always masked): its first byte and its payload."""
    header = reader.read(2)
    if len(header) < 2:
        return None
    length = header[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", reader.read(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", reader.read(8))
    mask = reader.read(4)
    payload = reader.read(length)
    return header[0], bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def frame(first: int, data: bytes) -> bytes:
    """A server's frame (never masked) with the given first byte: FIN, RSV, opcode."""
    if len(data) < 126:
        return bytes([first, len(data)]) + data
    if len(data) < 1 << 16:
        return bytes([first, 126]) + struct.pack("!H", len(data)) + data
    return bytes([first, 127]) + struct.pack("!Q", len(data)) + data
