"""App layer: the stack's WSGI wrapper (stack/wsgi.py) around any app, through Werkzeug's client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.test import Client

from stack.rundir import PROXY_TOKEN_ENV
from stack.wsgi import HEALTH_BODY, Stack, serve

pytestmark = pytest.mark.app

TOKEN = "the-runs-token"
# Everything a client may forge of where it came from.
FORGED = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "X-Forwarded-Proto": "https",
          "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
          "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/evil"}


def plain_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app with no framework: it echoes the client and scheme it was given."""
    body = f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']} {environ['PATH_INFO']}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]


def flask_app(own_health: bool) -> Flask:
    app = Flask(__name__)

    @app.get("/who")
    def who() -> Any:
        return jsonify(client=request.remote_addr, scheme=request.scheme)

    if own_health:
        @app.get("/healthz")
        def healthz() -> Any:
            return jsonify(mine=True)

    return app


@pytest.mark.parametrize("app", [plain_app, flask_app(own_health=False)], ids=["wsgi", "flask"])
def test_the_stack_answers_health_for_an_app_without_it(app: Any) -> None:
    client = Client(Stack(app, TOKEN))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.data == HEALTH_BODY
    head = client.head("/healthz")
    assert head.status_code == 200 and head.data == b""


def test_an_apps_own_health_route_wins() -> None:
    response = Client(Stack(flask_app(own_health=True), TOKEN)).get("/healthz")
    assert response.get_json() == {"mine": True}


def test_other_methods_on_health_get_a_json_405() -> None:
    response = Client(Stack(plain_app, TOKEN)).post("/healthz", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.get_json() == {"error": "Method Not Allowed", "status": 405,
                                   "request_id": "r-1"}


@pytest.mark.parametrize(("forwarded_for", "proto", "seen"), [
    # Nginx sends one X-Forwarded-For value; only the last hop is believed.
    ("203.0.113.9, 198.51.100.7", "https", {"client": "198.51.100.7", "scheme": "https"}),
    ("198.51.100.7", "http", {"client": "198.51.100.7", "scheme": "http"}),
    (None, "gopher", {"client": "127.0.0.1", "scheme": "http"}),
])
def test_one_trusted_proxy_hop(forwarded_for: str | None, proto: str, seen: dict[str, str]
                               ) -> None:
    headers = {"X-Forwarded-Proto": proto, "X-Flask-Stack-Proxy": TOKEN}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    response = Client(Stack(flask_app(own_health=False), TOKEN)).get(
        "/who", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.get_json() == seen


def echo_environ(environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
    """Every environ entry that is a string, as JSON."""
    body = json.dumps({k: v for k, v in environ.items() if isinstance(v, str)})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


@pytest.mark.parametrize("token", [None, "another-runs-token", ""], ids=["none", "wrong", "empty"])
def test_forwarded_headers_without_the_runs_token_never_reach_the_app(
        token: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    headers = dict(FORGED) if token is None else {**FORGED, "X-Flask-Stack-Proxy": token}
    seen = Client(Stack(echo_environ, TOKEN)).get(
        "/x", headers=headers, environ_base={"REMOTE_ADDR": ""}).get_json()
    assert seen["REMOTE_ADDR"] == ""
    assert seen["wsgi.url_scheme"] == "http"
    assert not {key for key in seen if "FORWARDED" in key or key in (
        "HTTP_X_REAL_IP", "HTTP_X_FLASK_STACK_PROXY")}, seen
    assert "include /srv/nginx/proxy.conf" in capsys.readouterr().err


def test_the_token_itself_never_reaches_the_app() -> None:
    seen = Client(Stack(echo_environ, TOKEN)).get(
        "/x", headers={"X-Flask-Stack-Proxy": TOKEN, "X-Forwarded-For": "198.51.100.7"}).get_json()
    assert "HTTP_X_FLASK_STACK_PROXY" not in seen
    assert seen["REMOTE_ADDR"] == "198.51.100.7"


def test_serve_imports_a_factory_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """APP_MODULE may name a factory call, as Gunicorn allows: the example app's."""
    monkeypatch.setenv(PROXY_TOKEN_ENV, TOKEN)
    wrapped = serve("app:create_app()")
    assert isinstance(wrapped, Stack)
    assert Client(wrapped).get("/").get_json() == {"msg": "Success!"}


def test_without_a_token_nothing_forwarded_is_believed() -> None:
    """Gunicorn started by hand, with no token: an empty header vouches for nothing."""
    seen = Client(Stack(echo_environ, "")).get(
        "/x", headers={**FORGED, "X-Flask-Stack-Proxy": ""},
        environ_base={"REMOTE_ADDR": ""}).get_json()
    assert seen["REMOTE_ADDR"] == "" and seen["wsgi.url_scheme"] == "http"
