"""App layer: the Flask app through its test client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from flask import Flask, request
from flask.testing import FlaskClient

from app import create_app
from harness.paths import ROOT

pytestmark = pytest.mark.app


@pytest.fixture
def app() -> Iterator[Flask]:
    app = create_app({"TESTING": True, "MAX_CONTENT_LENGTH": 16})

    @app.post("/upload")
    def upload() -> dict[str, int]:
        return {"bytes": len(request.get_data())}

    yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_index_is_the_contract(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"msg": "Success!"}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/nope", 404, "Not Found"),
        ("DELETE", "/", 405, "Method Not Allowed"),
        ("POST", "/upload", 413, "Request Entity Too Large"),
    ],
)
def test_errors_are_json(client: FlaskClient, method: str, path: str, status: int,
                         error: str) -> None:
    response = client.open(path, method=method, data=b"x" * 64,
                           headers={"X-Request-ID": "abc-123"})
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": error, "status": status, "request_id": "abc-123"}


def test_405_keeps_allow_header(client: FlaskClient) -> None:
    response = client.delete("/")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


def test_unhandled_exception_is_json_500(app: Flask) -> None:
    app.config["TESTING"] = False  # let the error handler answer instead of raising

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"] == "Internal Server Error"


def test_debugger_is_off_by_default(app: Flask) -> None:
    assert not app.debug


def test_python_app_py_runs_the_development_server_without_debugger(
        require: Callable[[object, str], None]) -> None:
    with socket.socket() as probe:
        require(probe.connect_ex(("127.0.0.1", 1300)) != 0, "port 1300 is taken here")
    env = {**os.environ, "FLASK_DEBUG": "0"}
    server = subprocess.Popen([sys.executable, str(ROOT / "app" / "app.py")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = requests.get("http://127.0.0.1:1300/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the development server did not answer")
        assert response.json() == {"msg": "Success!"}
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert "Debugger is active" not in output and "Debug mode: off" in output
