"""Named hostile requests, each with the statuses it may get (issue 5, item 6)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from harness.rawhttp import Answer, chunked, exchange, get, http_request
from reliability.hostile.rules import Tally, json_typed, problems
from reliability.result import Result
from stack.settings import defaults

SPOOFED = "203.0.113.9"  # documentation addresses (RFC 5737): never a real peer here
OTHER = "198.51.100.1"
MAX_BODY = defaults().max_body_size  # the servers run with the default
# Where a traversal would land: app/app.py, stack/gunicorn.conf.py, /etc/passwd.
SECRETS = (b"create_app", b"wsgi_app", b"root:")


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
