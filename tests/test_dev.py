"""Development mode in the same image: DEV=1 with the app's directory mounted over
APP_DIR, an edited module or template is served on the next request, read-only
too; Nginx, the health check and the port are production's; Flask's debug off,
whatever FLASK_DEBUG says."""

from __future__ import annotations

import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from harness.checks import records
from harness.containers import Container
from harness.images import HARDENED

pytestmark = [pytest.mark.image, pytest.mark.engine]

RELOAD_SECONDS = 2  # the bound: an edit served within this long
APP = textwrap.dedent("""\
    from flask import Flask, render_template

    app = Flask(__name__)


    @app.get("/word")
    def word():
        return {"word": "before"}


    @app.get("/page")
    def page():
        return render_template("page.html")


    @app.get("/debug")
    def debug():
        return {"debug": app.debug}


    @app.get("/fail")
    def fail():
        raise ZeroDivisionError("failed on purpose")


    @app.errorhandler(500)
    def failed(error):
        return {"error": "answered by the app"}, 500
""")
TEMPLATE = "<p>{{ 'template ' + 'before' }}</p>\n"
CSS = "body { color: rgb(1, 2, 3); }\n"


def project(scratch: Path) -> Path:
    """An app's directory, as a developer's checkout mounts it."""
    path = Path(tempfile.mkdtemp(dir=scratch))
    (path / "templates").mkdir()
    (path / "static").mkdir()
    (path / "app.py").write_text(APP)
    (path / "templates" / "page.html").write_text(TEMPLATE)
    (path / "static" / "site.css").write_text(CSS)
    for item in [path, *path.rglob("*")]:
        item.chmod(0o777 if item.is_dir() else 0o666)  # the developer edits; the app reads
    return path


def served_within(url: str, wanted: str, seconds: float) -> float:
    """How long until `url` answers with `wanted` in it; fails past `seconds`."""
    started = time.monotonic()
    while True:
        try:
            if wanted in requests.get(url, timeout=2).text:
                return time.monotonic() - started
        except requests.RequestException:
            pass  # the worker being started again
        assert time.monotonic() - started < seconds, f"{wanted!r} not served in {seconds} s"
        time.sleep(0.05)


@pytest.mark.parametrize("args", [(), HARDENED], ids=["writable", "read-only-hardened"])
def test_an_edit_is_served_on_the_next_request(run_container: Callable[..., Container],
                                               scratch: Path, args: tuple[str, ...]) -> None:
    code = project(scratch)
    server = run_container(env={"DEV": "1", "APP_DIR": "/srv/dev"},
                           args=(f"--volume={code}:/srv/dev", *args))
    assert requests.get(f"{server.base_url}/word", timeout=10).json() == {"word": "before"}
    assert "template before" in requests.get(f"{server.base_url}/page", timeout=10).text
    # A route edited: Gunicorn's poller starts the worker again.
    (code / "app.py").write_text(APP.replace('"before"', '"after"'))
    served_within(f"{server.base_url}/word", '"after"', RELOAD_SECONDS)
    # A template edited: read anew, with no restart.
    (code / "templates" / "page.html").write_text(TEMPLATE.replace("before", "after"))
    served_within(f"{server.base_url}/page", "template after", RELOAD_SECONDS)
    # Production's front: the health check, Nginx's static files, one worker, text logs.
    assert requests.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    styled = requests.get(f"{server.base_url}/static/site.css", timeout=10)
    assert styled.text == CSS
    # Nginx's lifetime and validators (Flask's own static route says no-cache).
    assert styled.headers["Cache-Control"] == "public, max-age=3600"
    assert styled.headers["ETag"] and styled.headers["Last-Modified"]
    logs = server.logs()
    assert "1 gthread workers" in logs
    assert not records(logs)  # text for a person, not JSON


def test_never_flasks_debug(run_container: Callable[..., Container], scratch: Path) -> None:
    """Not even with FLASK_DEBUG=1: debug would send an error past the app's 500
    handler; no traceback nor debugger ever reaches the published port."""
    code = project(scratch)
    server = run_container(env={"DEV": "1", "APP_DIR": "/srv/dev", "FLASK_DEBUG": "1"},
                           args=(f"--volume={code}:/srv/dev",))
    assert requests.get(f"{server.base_url}/debug", timeout=10).json() == {"debug": False}
    failed = requests.get(f"{server.base_url}/fail", timeout=10)
    assert failed.status_code == 500
    assert failed.json() == {"error": "answered by the app"}
    for shown in ("Traceback", "Werkzeug Debugger", "PIN", "ZeroDivisionError"):
        assert shown not in failed.text
    assert "ZeroDivisionError: failed on purpose" in server.logs()  # for the developer
