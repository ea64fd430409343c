"""Hostile input (issue 5, items 6 and 7): requests no honest client sends, and random ones.

Everything goes over a raw socket, byte for byte: an HTTP client library would
normalise or refuse most of these requests before they left the machine.

- CASES: named hostile requests with the statuses each may get. Every error is
  JSON whose "status" is the HTTP status; spoofed client addresses never reach
  the app. `run_hostile` sends them all for the report; tests/test_hostile.py
  one test each.
- `fuzz`: random request lines, headers and bodies from hypothesis; no 5xx,
  every answer parseable, no process restarted.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reliability.result import Result

TIMEOUT = 10.0  # seconds for one exchange; Nginx answers every complete request well within
FUZZ_TIMEOUT = 5.0
# A request line Nginx takes as HTTP/0.9 (no version): the answer is the body alone.
HTTP09_LINE = re.compile(rb"[^ ]+ +[^ ]+ *")
SPOOFED = "203.0.113.9"  # documentation addresses (RFC 5737): never a real peer here
OTHER = "198.51.100.1"
MAX_BODY = 1024 * 1024  # MAX_BODY_SIZE's default, 1m
# Where a traversal would land: app/app.py, stack/gunicorn.conf.py, /etc/passwd.
SECRETS = (b"create_app", b"wsgi_app", b"root:")
MAX_SHOWN = 10  # broken requests the report shows


# --- a raw HTTP client


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


# --- what every answer must be


def problems(request: bytes, answer: Answer) -> list[str]:
    """The rules any answer breaks, whatever was asked: [] when it is fine.

    - An answer comes (Nginx answers every complete request, garbage too).
    - Never a 5xx: nothing a client sends is the server's fault.
    - An error is JSON whose "status" is the HTTP status and whose "request_id"
      is the X-Request-ID header, or null when Gunicorn refused the request
      before reading one (a HEAD's error has only the Content-Type).
    - The body alone (HTTP/0.9) only for a request line without a version,
      which is HTTP/0.9; it has no status to check, save one a JSON body states.
    """
    if answer.error:
        return [answer.error]
    assert answer.status is not None
    if answer.status == 0:
        first_line = request.split(b"\n", 1)[0].removesuffix(b"\r")
        found = [] if HTTP09_LINE.fullmatch(first_line) else ["no status line"]
        stated = answer.json()
        if isinstance(stated, dict) and isinstance(stated.get("status"), int) \
                and stated["status"] >= 500:
            found.append(f"HTTP/0.9 body states {stated['status']}")
        return found
    found = [f"{answer.status} is a 5xx"] if answer.status >= 500 else []
    if answer.status >= 400:
        if not json_typed(answer):
            content_type = answer.headers.get("Content-Type") or "no Content-Type"
            found.append(f"error as {content_type}: {answer.body[:80]!r}")
        elif not request.startswith(b"HEAD "):
            body = answer.json()
            if not isinstance(body, dict) or body.get("status") != answer.status:
                found.append(f"error body without status {answer.status}: {answer.body[:80]!r}")
            elif body.get("request_id") not in (answer.headers.get("X-Request-ID"), None):
                found.append("error body's request_id is not the X-Request-ID header")
    return found


def json_typed(answer: Answer) -> bool:
    return answer.headers.get("Content-Type", "").startswith("application/json")


# --- hostile requests, each with what it may get


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    statuses: tuple[int, ...]  # allowed; 0 is an HTTP/0.9 answer
    hidden: tuple[bytes, ...] = ()  # must not be in the body
    # Addresses the request claims for the client: the answer must be /whoami's,
    # showing the real peer and plain http, never one of these.
    spoofed: tuple[str, ...] = ()

    def send(self, base_url: str) -> Answer:
        return exchange(base_url, self.request, rest=True)

    def problems(self, answer: Answer) -> list[str]:
        found = problems(self.request, answer)
        if answer.status not in self.statuses:
            found.append(f"status {answer.label()}, expected one of {self.statuses}")
        elif answer.status < 400 and not (answer.json() is not None
                                          and (answer.status == 0 or json_typed(answer))):
            found.append(f"answer is not JSON: {answer.body[:80]!r}")  # errors: see problems()
        found += [f"answer shows {secret!r}" for secret in self.hidden
                  if secret in answer.body + answer.rest]
        if self.spoofed:
            found += whoami_problems(answer.json(), self.spoofed)
        return found


def whoami_problems(seen: Any, spoofed: tuple[str, ...]) -> list[str]:
    if not isinstance(seen, dict):
        return [f"not /whoami's answer: {seen!r}"]
    found = []
    try:
        ipaddress.ip_address(seen.get("client"))
    except ValueError:
        found.append(f"client {seen.get('client')!r} is not the peer's address")
    if seen.get("client") in spoofed:
        found.append(f"the app believed the spoofed client {seen['client']}")
    if seen.get("scheme") != "http":
        found.append(f"the app believed the spoofed scheme {seen.get('scheme')!r}")
    return found


def flood(count: int) -> tuple[bytes, ...]:
    return tuple(b"X-Flood-%d: v" % i for i in range(count))


def traversal(name: str, target: bytes) -> Case:
    return Case(name, get(target), (400, 403, 404), hidden=SECRETS)


# Hidden in a body: if the server ever answers it, X-Request-ID: smuggled shows.
SMUGGLED = b"GET /nope HTTP/1.1\r\nHost: hostile\r\nX-Request-ID: smuggled\r\n\r\n"
LAST = get(b"/healthz")  # pipelined after it: with Connection: close, so the server closes


def smuggle(name: str, line: bytes, *headers: bytes, body: bytes,
            statuses: tuple[int, ...] = (400,)) -> Case:
    """A request whose body hides SMUGGLED, whatever framing the server believes."""
    head = b"\r\n".join([line, b"Host: hostile", *headers]) + b"\r\n\r\n"
    return Case(name, head + body + LAST, statuses, hidden=(b"smuggled",))


def spoof(name: str, *headers: bytes, target: bytes = b"/whoami") -> Case:
    return Case(name, get(target, *headers), (200,), spoofed=(SPOOFED, OTHER))


POST = b"POST / HTTP/1.1"
CHUNKED = b"Transfer-Encoding: chunked"

CASES: tuple[Case, ...] = (
    # Sizes: Nginx's limits, and Gunicorn's lower ones behind it.
    Case("body_over_limit", http_request(POST, b"Content-Length: %d" % (MAX_BODY + 1)), (413,)),
    Case("chunked_body_over_limit",
         http_request(POST, CHUNKED, body=b"%x\r\n" % (MAX_BODY + 1) + b"x" * 1024), (413,)),
    Case("url_over_nginx_limit", get(b"/" + b"a" * 9000), (414,)),
    Case("url_over_gunicorn_limit", get(b"/" + b"a" * 5000), (414,)),
    Case("header_over_nginx_limit", get(b"/", b"X-Big: " + b"a" * 9000), (431,)),
    Case("header_over_gunicorn_limit", get(b"/", b"X-Big: " + b"a" * 8183), (431,)),
    Case("header_flood_500", get(b"/", *flood(500)), (431,)),
    Case("header_flood_1000", get(b"/", *flood(1000)), (431,)),
    # Request lines.
    Case("malformed_request_line", http_request(b"GET / HTTP/1.1 junk"), (400,)),
    Case("binary_request_line", b"\x00\x01\x02\xff\r\n\r\n", (400,)),
    Case("tls_handshake", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
         (400,)),
    Case("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400,)),
    Case("http2_version", http_request(b"GET / HTTP/2.0"), (400,)),
    Case("unknown_version", http_request(b"GET / HTTP/9.9"), (400,)),
    Case("http09_request", b"GET /\r\n\r\n", (0,)),
    Case("no_host", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", (400,)),
    Case("two_hosts", get(b"/", b"Host: other"), (400,)),
    Case("folded_header", get(b"/", b"X-Folded: a", b" b"), (400,)),
    # Methods.
    Case("unknown_method", http_request(b"FOO / HTTP/1.1"), (400, 405)),
    Case("lowercase_method", http_request(b"get / HTTP/1.1"), (400, 405)),
    Case("trace", http_request(b"TRACE / HTTP/1.1"), (400, 405)),
    Case("connect", http_request(b"CONNECT hostile:443 HTTP/1.1"), (400, 405)),
    Case("put_on_static", http_request(b"PUT /static/robots.txt HTTP/1.1",
                                       b"Content-Length: 2", body=b"hi"), (400, 405)),
    Case("method_too_long", http_request(b"ABCDEFGHIJKLMNOPQRSTUVWXY / HTTP/1.1"), (400, 405)),
    Case("method_too_short", http_request(b"AB / HTTP/1.1"), (400, 405)),
    # Bodies and framing: a smuggled request is never answered. Both framings at
    # once (CL.TE and TE.CL) get 400, and the connection closes.
    smuggle("te_and_cl", POST, b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUGGLED), CHUNKED,
            body=b"0\r\n\r\n" + SMUGGLED),
    smuggle("cl_and_te", POST, CHUNKED, b"Content-Length: 4", body=chunked([SMUGGLED])),
    smuggle("te_space_before_colon", POST, b"Transfer-Encoding : chunked",
            b"Content-Length: %d" % len(b"0\r\n\r\n" + SMUGGLED), body=b"0\r\n\r\n" + SMUGGLED),
    smuggle("two_content_lengths", POST, b"Content-Length: 0",
            b"Content-Length: %d" % len(SMUGGLED), body=SMUGGLED),
    # Legal, if pointless: the body is read as one and ignored (or refused).
    smuggle("body_on_get", b"GET / HTTP/1.1", b"Content-Length: %d" % len(SMUGGLED),
            body=SMUGGLED, statuses=(200, 400)),
    Case("negative_content_length", http_request(POST, b"Content-Length: -1"), (400,)),
    Case("huge_content_length", http_request(POST, b"Content-Length: 99999999999999999999"),
         (400, 413)),
    Case("unknown_transfer_encoding", http_request(POST, b"Transfer-Encoding: xchunked"), (400,)),
    Case("chunked_not_last", http_request(POST, b"Transfer-Encoding: chunked, gzip"), (400,)),
    Case("chunked_on_http10", b"POST / HTTP/1.0\r\n" + CHUNKED + b"\r\n\r\n0\r\n\r\n", (400,)),
    Case("chunk_size_not_hex", http_request(POST, CHUNKED, body=b"zz\r\nhello\r\n0\r\n\r\n"),
         (400,)),
    # ...to a path Nginx answers itself: the body is discarded, and fails, in its error page.
    Case("chunk_size_not_hex_to_static",
         http_request(b"DELETE /static/nope HTTP/1.1", CHUNKED, body=b"zz\r\n"), (400,)),
    # Traversal out of /static/, plain and encoded.
    traversal("static_dotdot", b"/static/../app.py"),
    traversal("static_dotdot_to_root", b"/static/../../../../etc/passwd"),
    traversal("static_encoded_dotdot", b"/static/%2e%2e%2f%2e%2e%2fstack%2fgunicorn.conf.py"),
    traversal("static_double_encoded", b"/static/%252e%252e%252fapp.py"),
    traversal("static_overlong_utf8", b"/static/%c0%ae%c0%ae/app.py"),
    traversal("static_backslash", b"/static/..\\app.py"),
    traversal("static_semicolon", b"/static/..;/app.py"),
    traversal("static_nul", b"/static/robots.txt%00.py"),
    traversal("static_prefix", b"/static../app.py"),
    # Bytes that are not UTF-8 (or not even text).
    Case("path_not_utf8", get(b"/\xff\xfe"), (400,)),
    Case("query_not_utf8", get(b"/whoami?\xff"), (400,)),
    Case("path_raw_utf8", get("/é".encode()), (400,)),
    Case("path_encoded_not_utf8", get(b"/%ff%fe"), (404,)),
    Case("static_not_utf8", get(b"/static/\xff"), (400, 404)),
    Case("header_value_not_utf8", get(b"/", b"X-Junk: \xff\xfe\x80"), (200,)),
    Case("header_name_not_utf8", get(b"/", b"X-\xff: a"), (200, 400)),
    Case("host_not_utf8", b"GET / HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
         (200, 400)),
    Case("header_value_control", get(b"/", b"X-Junk: a\x01b"), (400,)),
    Case("header_value_nul", get(b"/", b"X-Junk: a\x00b"), (400,)),
    # Forwarded headers from an untrusted peer: ignored, the app sees the real one.
    spoof("xff_spoofed", b"X-Forwarded-For: " + SPOOFED.encode(), b"X-Forwarded-Proto: https"),
    spoof("xff_two_lines", b"X-Forwarded-For: " + SPOOFED.encode(),
          b"X-Forwarded-For: " + OTHER.encode()),
    spoof("xff_list", f"X-Forwarded-For: {SPOOFED}, {OTHER}".encode()),
    spoof("xff_not_utf8", b"X-Forwarded-For: \xff\xfe"),
    spoof("xff_garbage", f"X-Forwarded-For: unknown, <script>, ::ffff:{SPOOFED}".encode()),
    spoof("xfp_conflicting", b"X-Forwarded-Proto: https, http", b"X-Forwarded-Proto: https"),
    spoof("x_forwarded_ssl", b"X-Forwarded-Ssl: on"),
    spoof("x_forwarded_protocol", b"X-Forwarded-Protocol: ssl"),
    spoof("x_forwarded_host_port", b"X-Forwarded-Host: evil", b"X-Forwarded-Port: 443",
          b"X-Forwarded-Prefix: /evil"),
    spoof("forwarded_rfc7239", f"Forwarded: for={SPOOFED};proto=https".encode()),
    spoof("real_ip_headers", f"X-Real-IP: {SPOOFED}".encode(),
          f"True-Client-IP: {SPOOFED}".encode(), f"X-Client-IP: {SPOOFED}".encode()),
    spoof("absolute_target", target=f"http://{SPOOFED}/whoami".encode()),
)


@dataclass
class Tally:
    """Counts answers into a Result: every request sent, by answer, and what broke."""

    result: Result
    seen: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)

    def add(self, what: str, answer: Answer, found: list[str]) -> None:
        self.result.sent += 1
        self.seen[answer.label()] += 1
        if found:
            self.result.failed += 1
            if len(self.broken) < MAX_SHOWN:
                self.broken.append(f"{what} -> {'; '.join(found)}")

    def close(self, base_url: str) -> Result:
        """The figures and the checks both runs share, after a last /healthz."""
        self.result.figures.update({f"answered {label}": n
                                    for label, n in sorted(self.seen.items())})
        if self.broken:
            self.result.figures["broken"] = " | ".join(self.broken)
        self.result.sent += 1
        self.result.check("/healthz answers 200 after", healthy(base_url))
        self.result.check("no 5xx", not any(label.startswith("5") for label in self.seen))
        return self.result


def run_hostile(base_url: str) -> Result:
    """Every case once, then /healthz: the report's counterpart of the tests."""
    tally = Tally(Result(f"hostile input ({len(CASES)} crafted requests)"))
    for case in CASES:
        answer = case.send(base_url)
        tally.add(case.name, answer, case.problems(answer))
    result = tally.close(base_url)
    result.check("each hostile request gets its status, errors as JSON, spoofs ignored",
                 result.failed == 0)
    return result


# --- random requests


def line(max_size: int = 40) -> st.SearchStrategy[bytes]:
    """Any bytes but a line feed (Nginx ends a line at a bare LF too)."""
    return st.binary(max_size=max_size).map(lambda raw: raw.replace(b"\n", b""))


METHODS = (b"GET", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
ODD_METHODS = (b"TRACE", b"CONNECT", b"PRI", b"get", b"M-SEARCH", b"PROPFIND")
TARGETS = (b"/", b"/healthz", b"/whoami", b"/nope", b"/static/robots.txt", b"/static/",
           b"/static/../app.py", b"*", b"http://hostile/whoami", b"/?a=%ff", b"/%2e%2e/")
VERSIONS = (b"HTTP/1.1", b"HTTP/1.0", b"", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.10", b"http/1.1",
            b"HTTP/1.1 junk")
HOSTS = (b"", b"Host: \xff\xfe\r\n", b"Host: a b\r\n", b"Host: fuzz:99999\r\n",
         b"Host: [::1]\r\n", b"Host: ../..\r\n", b"Host: fuzz\r\nHost: other\r\n")
HEADER_NAMES = (b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Ssl",
                b"Forwarded", b"X-Request-ID", b"Range", b"If-Match", b"If-None-Match",
                b"If-Modified-Since", b"If-Unmodified-Since", b"If-Range", b"Accept-Encoding",
                b"Cookie", b"Content-Type", b"Expect", b"Connection", b"Upgrade", b"Origin")
HEADER_VALUES = (b"", b"203.0.113.9", b"https, http", b"on", b"bytes=0-1,3-4", b"bytes=99999-",
                 b"*", b'"nope"', b"Thu, 01 Jan 1970 00:00:00 GMT", b"gzip, br",
                 b"100-continue", b"keep-alive, Upgrade", b"h2c", b"lb-42.a", b"\xff\xfe")
# Framing comes from BODIES alone: a random Content-Length would leave Nginx
# waiting for bytes that never come, which is a timeout, not an answer.
FRAMING = (b"content-length", b"transfer-encoding")


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` five times in six: a request has a few oddities at once, not one in each
    part, so a fair share gets past Nginx and Gunicorn to the app."""
    return st.integers(0, 5).flatmap(lambda pick: rare if pick == 0 else usual)


METHOD = mostly(st.sampled_from(METHODS),
                st.one_of(st.sampled_from(ODD_METHODS),
                          st.from_regex(rb"[A-Z]{1,24}", fullmatch=True), line(12)))
TARGET = mostly(st.sampled_from(TARGETS),
                st.one_of(st.builds(bytes.__add__, st.sampled_from(TARGETS), line(20)),
                          st.from_regex(rb"/[%0-9a-fA-F./]{0,30}", fullmatch=True), line()))
VERSION = mostly(st.just(b"HTTP/1.1"), st.one_of(st.sampled_from(VERSIONS), line(12)))
SPACE = mostly(st.just(b" "), st.sampled_from((b"  ", b"\t", b" \t")))
REQUEST_LINE = mostly(
    st.builds(lambda method, space, target, version: method + space + target
              + (space + version if version else b""), METHOD, SPACE, TARGET, VERSION),
    line())
HEADER = mostly(
    st.builds(lambda name, value: name + b": " + value,
              st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_VALUES)),
    st.builds(lambda name, value: name + b": " + value,
              st.one_of(st.from_regex(rb"[A-Za-z0-9-]{1,20}", fullmatch=True), line(20))
              .filter(lambda name: name.strip().lower() not in FRAMING),
              st.one_of(line(), line(9000))))
BODY = mostly(
    st.one_of(
        st.just((b"", b"")),
        st.binary(max_size=300).map(lambda body: (b"Content-Length: %d\r\n" % len(body), body)),
        st.lists(st.binary(min_size=1, max_size=60), max_size=4).map(
            lambda chunks: (b"Transfer-Encoding: chunked\r\n", chunked(chunks)))),
    st.one_of(
        st.from_regex(rb"[g-z]{1,8}", fullmatch=True).map(  # a chunk size that is not hex
            lambda size: (b"Transfer-Encoding: chunked\r\n", size + b"\r\nhello\r\n0\r\n\r\n")),
        st.just((b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
        st.sampled_from((b"xchunked", b"chunked, gzip", b"identity", b"gzip")).map(
            lambda coding: (b"Transfer-Encoding: " + coding + b"\r\n", b""))))
REQUESTS = st.builds(
    lambda request_line, host, headers, flood_size, body: (
        request_line + b"\r\n" + host
        + b"".join(header + b"\r\n" for header in (*headers, *flood(flood_size)))
        + body[0] + b"Connection: close\r\n\r\n" + body[1]),
    REQUEST_LINE, mostly(st.just(b"Host: fuzz\r\n"), st.sampled_from(HOSTS)),
    st.lists(HEADER, max_size=6),
    mostly(st.just(0), st.integers(1, 700)), BODY,
)


def settled(pids: Callable[[], set[int]], timeout: float = 10.0) -> set[int]:
    """The processes once none has come or gone for half a second: when /healthz
    first answers, Gunicorn may still be forking workers (up to 0.1 s apart)."""
    current = pids()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        previous, current = current, pids()
        if current == previous:
            break
    return current


def command(pid: int) -> str:
    """A process's command line, from the host's /proc (a container's processes too)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace").strip()[:60] or str(pid)
    except OSError:
        return str(pid)


def fuzz(base_url: str, examples: int, pids: Callable[[], set[int]]) -> Result:
    """`examples` random requests, one at a time; `pids()` gives the stack's processes.

    What is acceptable is what `problems` allows, decided so:
    - Every request sent is complete (its framing comes from BODY alone), and
      Nginx answers every complete request, garbage with 400. So a connection
      closed without an answer is a failure, as is no answer in FUZZ_TIMEOUT
      (which also bounds the time: examples x FUZZ_TIMEOUT at the very worst).
    - A body without a status line only for a request line without a version:
      that is HTTP/0.9, which Nginx still speaks.
    - No 5xx, and errors are JSON, as for CASES.
    - Then the same processes as before (once settled), and /healthz 200.
    """
    tally = Tally(Result(f"fuzz ({examples} random requests, hypothesis)"))
    before = settled(pids)
    names = {pid: command(pid) for pid in before}  # a process gone later cannot say its name
    began = time.monotonic()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate], print_blob=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example,
                                     HealthCheck.filter_too_much])
    @given(REQUESTS)
    def probe(request: bytes) -> None:
        answer = exchange(base_url, request, FUZZ_TIMEOUT)
        # The request in full when it broke a rule: the seed is random on purpose.
        tally.add(repr(request[:300]), answer, problems(request, answer))

    probe()
    result = tally.result
    result.figures["examples"] = result.sent
    result.figures["seconds"] = round(time.monotonic() - began, 1)
    tally.close(base_url)
    after = pids()
    result.figures["processes"] = len(before)
    if after != before:
        result.figures["processes gone"] = ", ".join(names[pid] for pid in before - after)
        result.figures["processes new"] = ", ".join(command(pid) for pid in after - before)
    result.check(f"{examples} examples sent", result.figures["examples"] == examples)
    result.check("every answer parseable HTTP, errors as JSON (HTTP/0.9 only for HTTP/0.9)",
                 result.failed == 0)
    result.check("same processes before and after (no restart)", after == before)
    return result
