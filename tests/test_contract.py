"""The HTTP contract, checked on the stack layer and on the image layer alike."""

from __future__ import annotations

import json
import re

import pytest
import requests

from harness.checks import access_log, assert_contract, assert_json_error
from harness.rawhttp import exchange
from harness.server import Server


def raw_request(server: Server, data: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Send bytes as they are (no client normalising paths) and parse the answer."""
    answer = exchange(server.base_url, data)
    return answer.status, answer.headers, answer.body


def test_index(server: Server) -> None:
    response = requests.get(f"{server.base_url}/", timeout=10)
    assert_contract(response)
    assert response.headers["Server"] == "nginx"  # no version given away


def test_health_goes_through_to_the_app(server: Server) -> None:
    response = requests.get(f"{server.base_url}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_request_id_is_made_kept_and_logged(server: Server) -> None:
    made = requests.get(f"{server.base_url}/", timeout=10).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    kept = requests.get(f"{server.base_url}/nope", headers={"X-Request-ID": "lb-42.a"},
                        timeout=10)
    assert kept.headers["X-Request-ID"] == "lb-42.a"
    assert kept.json()["request_id"] == "lb-42.a"  # the app was given the same id
    replaced = requests.get(f"{server.base_url}/", headers={"X-Request-ID": "bad id\"x"},
                            timeout=10)
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    logged = access_log(server, made, "lb-42.a")
    assert logged[made]["status"] == 200
    assert logged["lb-42.a"]["status"] == 404 and logged["lb-42.a"]["uri"] == "/nope"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nope", 404),
    ("POST", "/", 405),
    ("DELETE", "/healthz", 405),
])
def test_app_errors_are_json(server: Server, method: str, path: str, status: int) -> None:
    assert_json_error(requests.request(method, f"{server.base_url}{path}", timeout=10), status)


def test_body_over_the_limit_is_413(server: Server) -> None:
    response = requests.post(f"{server.base_url}/", data=b"x" * (1024 * 1024 + 1), timeout=10)
    assert_json_error(response, 413)


def test_long_url_is_414(server: Server) -> None:
    assert_json_error(requests.get(f"{server.base_url}/{'a' * 9000}", timeout=10), 414)


def test_large_header_is_431(server: Server) -> None:
    response = requests.get(f"{server.base_url}/", headers={"X-Big": "a" * 9000}, timeout=10)
    assert_json_error(response, 431)


def test_malformed_request_line_is_json_400(server: Server) -> None:
    status, headers, body = raw_request(server, b"GET / HTTP/1.1 junk\r\n\r\n")
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == 400


def test_static_files_are_served_by_nginx_with_caching(server: Server) -> None:
    response = requests.get(f"{server.base_url}/static/robots.txt", timeout=10)
    assert response.status_code == 200
    assert response.text.startswith("User-agent:")
    assert re.fullmatch(r"public, max-age=\d+", response.headers["Cache-Control"])
    assert "ETag" in response.headers
    # Nginx answered by itself: its log line has no upstream time.
    request_id = response.headers["X-Request-ID"]
    assert access_log(server, request_id)[request_id]["upstream_duration"] == ""


@pytest.mark.parametrize("path", [
    "/static/../app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e/app.py",
    "/static../app.py",
    "/static/../../../../etc/passwd",
    "/static/",
])
def test_nothing_outside_static_is_reachable(server: Server, path: str) -> None:
    status, headers, body = raw_request(
        server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status in (400, 403, 404)
    assert headers["Content-Type"].startswith("application/json")
    assert b"create_app" not in body and b"root:" not in body


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(server: Server) -> None:
    response = requests.get(f"{server.base_url}/whoami", timeout=10, headers={
        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert response.json()["client"] != "203.0.113.9"
    assert response.json()["scheme"] == "http"
