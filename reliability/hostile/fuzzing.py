"""Random requests from hypothesis (issue 5, item 7): no 5xx, every answer parseable,
no process restarted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.procfs import cmdline
from harness.rawhttp import chunked, exchange
from reliability.hostile.cases import flood
from reliability.hostile.rules import Tally, problems
from reliability.result import Result

FUZZ_TIMEOUT = 5.0


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
    """A process's command line, shortened for the report."""
    try:
        return cmdline(pid)[:60] or str(pid)
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
