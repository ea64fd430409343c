"""Development mode in the same image: DEV=1 with the app's directory mounted over
APP_DIR, an edited module or template is served on the next request, read-only
too; Nginx, the health check and the port are production's."""

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
""")
TEMPLATE = "<p>{{ 'template ' + 'before' }}</p>\n"


def project(scratch: Path) -> Path:
    """An app's directory, as a developer's checkout mounts it."""
    path = Path(tempfile.mkdtemp(dir=scratch))
    (path / "templates").mkdir()
    (path / "app.py").write_text(APP)
    (path / "templates" / "page.html").write_text(TEMPLATE)
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
    # Production's front: the health check, Nginx's JSON errors, one worker, text logs.
    assert requests.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    missing = requests.get(f"{server.base_url}/static/nope.css", timeout=10)
    assert missing.status_code == 404
    logs = server.logs()
    assert "1 gthread workers" in logs
    assert not records(logs)  # text for a person, not JSON
