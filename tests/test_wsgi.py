"""App layer: the stack's WSGI wrapper (stack/wsgi.py) around any app, through Werkzeug's client."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.test import Client

from stack.wsgi import HEALTH_BODY, Stack, serve

pytestmark = pytest.mark.app


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
    client = Client(Stack(app))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.data == HEALTH_BODY
    head = client.head("/healthz")
    assert head.status_code == 200 and head.data == b""


def test_an_apps_own_health_route_wins() -> None:
    response = Client(Stack(flask_app(own_health=True))).get("/healthz")
    assert response.get_json() == {"mine": True}


def test_other_methods_on_health_get_a_json_405() -> None:
    response = Client(Stack(plain_app)).post("/healthz", headers={"X-Request-ID": "r-1"})
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
    headers = {"X-Forwarded-Proto": proto}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    response = Client(Stack(flask_app(own_health=False))).get(
        "/who", headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert response.get_json() == seen


def test_serve_imports_a_factory_call() -> None:
    """APP_MODULE may name a factory call, as Gunicorn allows: the example app's."""
    wrapped = serve("app:create_app()")
    assert isinstance(wrapped, Stack)
    assert Client(wrapped).get("/").get_json() == {"msg": "Success!"}
