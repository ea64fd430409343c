"""What the front server does for every app, on every running layer: compression
(never twice, never a WebSocket), static files cached by their names,
server-sent events as they come, and an app mounted under a path prefix
(nginx/nginx.conf.j2, stack/wsgi.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest
import requests
import websocket

from harness.paths import EXAMPLE_APP
from stack.settings import defaults

# What it shows goes through the engine (its options, its logs): both engines.
pytestmark = pytest.mark.engine

APP = EXAMPLE_APP.read_text()
# A static folder as a bundler leaves it: a hashed name, a plain one with its
# precompressed twin (whose content differs, to tell which was sent).
CSS = "body { color: rgb(1, 2, 3); }\n" * 100
PRECOMPRESSED = "/* the .gz twin */\n" + CSS
STATIC = {"app.py": APP, "static/site.css": CSS, "static/site.css.gz": gzip.compress(
    PRECOMPRESSED.encode()), "static/site.0123abcd.css": CSS, "static/tiny.txt": "tiny\n"}
YEAR = "public, max-age=31536000, immutable"
HOUR = "public, max-age=3600"
# Loopback and the private ranges the engines' gateways are in.
TRUSTED = "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def raw(url: str, **headers: str) -> requests.Response:
    """An answer whose body stays as it came over the wire."""
    answer = requests.get(url, headers=headers, timeout=10, stream=True)
    answer.wire = answer.raw.read(decode_content=False)  # type: ignore[attr-defined]
    return answer


def test_text_is_compressed_for_clients_that_accept_it(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    plain = raw(f"{server.base_url}/big", **{"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert len(plain.wire) > defaults().gzip_min_length * 10
    packed = raw(f"{server.base_url}/big", **{"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert gzip.decompress(packed.wire) == plain.wire
    assert len(packed.wire) * 5 < len(plain.wire)
    # A small answer is not worth it.
    small = raw(f"{server.base_url}/", **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


def test_what_the_app_compressed_arrives_as_it_sent_it(launch) -> None:
    server = launch(APP_MODULE="untouched:app")
    answer = raw(f"{server.base_url}/gzipped", **{"Accept-Encoding": "gzip"})
    assert answer.headers["Content-Encoding"] == "gzip"  # one: Nginx added none
    assert len(answer.wire) > defaults().gzip_min_length  # Nginx would compress its size
    assert hashlib.sha256(answer.wire).hexdigest() == answer.headers["X-Sent-SHA256"]
    records = json.loads(gzip.decompress(answer.wire))  # compressed once, not twice
    assert len(records) == 300 and all(len(record) == 64 for record in records)


def test_a_websocket_is_never_compressed(launch) -> None:
    server = launch(APP_MODULE="untouched:app")
    url = server.base_url.replace("http://", "ws://", 1) + "/echo"
    ws = websocket.create_connection(url, timeout=10, header=[
        "Accept-Encoding: gzip", "Sec-WebSocket-Extensions: permessage-deflate"])
    try:
        assert ws.getstatus() == 101
        # The app accepted no extension, and Nginx negotiated none of its own.
        assert not {"content-encoding", "sec-websocket-extensions"} & set(ws.getheaders())
        text = "compress me if you can " * 1000
        ws.send(text)
        echoed = ws.recv_frame()
        assert (echoed.opcode, echoed.rsv1) == (websocket.ABNF.OPCODE_TEXT, 0)
        assert echoed.data == text.encode()  # as sent, on the wire
    finally:
        ws.close()


def test_compression_can_be_off(launch) -> None:
    server = launch(APP_MODULE="slow:app", COMPRESSION="off")
    packed = raw(f"{server.base_url}/big", **{"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in packed.headers


def test_static_files_precompressed_and_cached_by_their_names(launch) -> None:
    server = launch(app=STATIC)
    base = f"{server.base_url}/static"
    twin = raw(f"{base}/site.css", **{"Accept-Encoding": "gzip"})
    assert twin.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(twin.wire).decode() == PRECOMPRESSED  # the file's .gz, as it is
    # And the file itself to others.
    assert raw(f"{base}/site.css", **{"Accept-Encoding": "identity"}).wire.decode() == CSS
    hashed = requests.get(f"{base}/site.0123abcd.css", timeout=10)
    assert hashed.headers["Cache-Control"] == YEAR
    plain = requests.get(f"{base}/site.css", timeout=10)
    assert plain.headers["Cache-Control"] == HOUR
    # The short-lived one revalidates: unchanged, it is a 304 without a body.
    again = requests.get(f"{base}/site.css", timeout=10,
                         headers={"If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    since = requests.get(f"{base}/site.css", timeout=10,
                         headers={"If-Modified-Since": plain.headers["Last-Modified"]})
    assert since.status_code == 304
    # Every answer still carries the stack's own headers.
    for answer in (hashed, plain, again):
        assert answer.headers["X-Request-ID"] and answer.headers["X-Content-Type-Options"]


def test_server_sent_events_arrive_one_by_one(launch) -> None:
    server = launch(APP_MODULE="slow:app")
    arrived = []
    with requests.get(f"{server.base_url}/events", stream=True, timeout=10,
                      headers={"Accept-Encoding": "gzip"}) as answer:
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in answer.headers
        for line in answer.iter_lines():
            if line.startswith(b"data:"):
                arrived.append(time.monotonic())
    assert len(arrived) == 3
    # Each came when it was sent, half a second apart, not all at the end.
    assert arrived[2] - arrived[0] > 0.8


def test_an_app_under_a_path_prefix(launch) -> None:
    server = launch(APP_MODULE="slow:app", ROOT_PATH="/shop")
    base = server.base_url
    assert requests.get(f"{base}/shop/", timeout=10).json() == {"msg": "Success!"}
    links = requests.get(f"{base}/shop/links", timeout=10).json()
    assert links["index"] == "/shop/" and links["static"] == "/shop/static/robots.txt"
    assert links["external"] == f"{base}/shop/"
    static = requests.get(f"{base}{links['static']}", timeout=10)
    assert static.status_code == 200 and static.headers["Cache-Control"] == HOUR  # Nginx's
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200  # balancers' path
    # And under the prefix, through Gunicorn (only /healthz itself drains).
    assert requests.get(f"{base}/shop/healthz", timeout=10).json() == {"status": "ok"}


@pytest.mark.parametrize(("trusted", "seen"), [(TRUSTED, "/api"), ("", "")],
                         ids=["trusted", "untrusted"])
def test_a_trusted_proxys_prefix(launch, trusted: str, seen: str) -> None:
    server = launch(APP_MODULE="slow:app", TRUSTED_PROXIES=trusted)
    links = requests.get(f"{server.base_url}/links", timeout=10,
                         headers={"X-Forwarded-Prefix": "/api"}).json()
    assert links["index"] == f"{seen}/"
