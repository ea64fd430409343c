"""A user's own app on every running layer: prestart.py, commands instead of the
server, static files Nginx does not have, any WSGI app with the stack's /healthz."""

from __future__ import annotations

import re
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.checks import access_log, log_text
from harness.paths import EXAMPLE_APP, ROOT

# What it shows goes through the engine (its options, its logs): both engines.
pytestmark = pytest.mark.engine

APP = EXAMPLE_APP.read_text()  # the example app, in a directory of its own
NGINX_CACHE = "public, max-age=3600"  # a static file's, from Nginx (its name has no hash)
# A prestart step that proves where and how it ran, and fails when asked to.
PRESTART = textwrap.dedent("""\
    import os, sys
    import app  # the app is importable
    in_app_dir = os.getcwd() == os.environ["APP_DIR"]
    print(f"prestart ran, in APP_DIR: {in_app_dir}, as uid {os.getuid()}", flush=True)
    sys.exit(int(os.environ.get("PRESTART_EXIT", "0")))
""")
# Any WSGI callable, no framework: the stack answers /healthz for it.
PLAIN_WSGI = textwrap.dedent("""\
    def app(environ, start_response):
        body = f"{environ['REMOTE_ADDR']} {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
""")


def test_prestart_runs_once_before_the_server(launch: Callable[..., Any]) -> None:
    server = launch(app={"app.py": APP, "prestart.py": PRESTART})
    logs = server.logs()
    (ran,) = re.finditer(r"prestart ran, in APP_DIR: (\w+), as uid (\d+)", logs)
    assert ran[1] == "True"
    assert int(ran[2]) != 0  # as the runtime user
    assert ran.start() < logs.index("Booting worker")  # before Gunicorn
    assert requests.get(f"{server.base_url}/", timeout=10).json() == {"msg": "Success!"}


def test_a_failing_prestart_stops_the_start(launch: Callable[..., Any]) -> None:
    server = launch(wait=False, app={"app.py": APP, "prestart.py": PRESTART}, PRESTART_EXIT="3")
    assert server.wait_exit(30) == 3
    logs = server.logs()
    assert "prestart.py failed with exit code 3: not starting the server" in logs
    assert "prestart ran, in APP_DIR: True" in logs
    assert "Booting worker" not in logs


def test_a_command_runs_instead_of_the_server(launch: Callable[..., Any]) -> None:
    script = "import os, app; assert os.getcwd() == os.environ['APP_DIR']; print(app.app.name)"
    server = launch(wait=False, app={"app.py": APP}, command=(launch.python, "-c", script))
    assert server.wait_exit(30) == 0
    logs = server.logs()
    assert logs.splitlines()[-1] == "app"  # Flask's name for the app module's app
    assert "Booting worker" not in logs and "prestart" not in logs


def test_a_commands_exit_code_comes_back(launch: Callable[..., Any]) -> None:
    failing = launch(wait=False, command=(launch.python, "-c", "raise SystemExit(7)"))
    assert failing.wait_exit(30) == 7
    missing = launch(wait=False, command=("no-such-command", "--help"))
    assert missing.wait_exit(30) == 127
    assert "no-such-command: command not found" in missing.logs()


def test_a_bad_setting_stops_a_command_too(launch: Callable[..., Any]) -> None:
    server = launch(wait=False, command=(launch.python, "-c", "pass"), PORT="http")
    assert server.wait_exit(30) == 78
    assert "invalid PORT='http'" in server.logs()


def test_any_wsgi_app_gets_the_stacks_health_and_client(launch: Callable[..., Any]) -> None:
    server = launch(app={"app.py": PLAIN_WSGI})
    health = requests.get(f"{server.base_url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    answer = requests.get(f"{server.base_url}/some/path", timeout=10,
                          headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "plain-1"})
    # The client as Nginx saw it, not what the client claimed.
    seen = access_log(server, "plain-1")["plain-1"]["client"]
    assert seen != "203.0.113.9"
    assert answer.text == f"{seen} /some/path"


def test_a_static_file_nginx_lacks_goes_on_to_the_app(launch: Callable[..., Any]) -> None:
    """With STATIC_PATH at a folder that does not exist, Flask's own static route
    serves it, with Flask's Cache-Control, not Nginx's."""
    by_nginx = launch()
    served = requests.get(f"{by_nginx.base_url}/static/robots.txt", timeout=10)
    assert served.status_code == 200 and served.headers["Cache-Control"] == NGINX_CACHE
    by_flask = launch(STATIC_PATH="/no-such-folder")
    served = requests.get(f"{by_flask.base_url}/static/robots.txt", timeout=10)
    assert served.status_code == 200 and served.headers["Cache-Control"] == "no-cache"
    assert served.text == (ROOT / "app" / "static" / "robots.txt").read_text()
    missing = requests.get(f"{by_flask.base_url}/static/nope.css", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == "Not Found"


def test_static_url_and_path_move_nginxs_files(launch: Callable[..., Any]) -> None:
    server = launch(STATIC_URL="/assets/")
    served = requests.get(f"{server.base_url}/assets/robots.txt", timeout=10)
    assert served.status_code == 200 and served.headers["Cache-Control"] == NGINX_CACHE


def snippet(scratch: Path, text: str) -> str:
    """A conf.d file to mount into the image: the volume option."""
    path = Path(tempfile.mkdtemp(dir=scratch)) / "extra.conf"
    path.write_text(text)
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return f"--volume={path}:/srv/nginx/conf.d/extra.conf:ro"


@pytest.mark.image
def test_nginx_additions_from_conf_d(run_container: Callable[..., Any], scratch: Path) -> None:
    server = run_container(args=(snippet(scratch, textwrap.dedent("""\
        add_header X-Extra "yes" always;
        location = /extra {
            default_type text/plain;
            return 200 "extra\\n";
        }
    """)),))
    extra = requests.get(f"{server.base_url}/extra", timeout=10)
    assert extra.status_code == 200 and extra.text == "extra\n"
    index = requests.get(f"{server.base_url}/", timeout=10)
    assert index.json() == {"msg": "Success!"}
    assert index.headers["X-Extra"] == "yes" and index.headers["X-Request-ID"]


@pytest.mark.image
def test_a_snippet_nginx_refuses_stops_the_start(run_container: Callable[..., Any],
                                                 scratch: Path) -> None:
    server = run_container(wait=False, args=(snippet(scratch, "bogus_directive on;\n"),))
    assert server.wait_exit(30) == 78
    logs = log_text(server)
    assert 'unknown directive "bogus_directive" in /srv/nginx/conf.d/extra.conf:1' in logs
    assert "Nginx refused its configuration" in logs
    assert "Booting worker" not in logs


# A client that claims to be someone else, somewhere else.
FORGED = {"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "X-Forwarded-Proto": "https",
          "Forwarded": "for=6.6.6.6;proto=https;host=evil.example",
          "X-Forwarded-Host": "evil.example"}
# Two locations of a user's own with a proxy_set_header each, so that Nginx
# inherits none of the server's: one includes the stack's proxy.conf, one does not.
OWN_LOCATIONS = """\
location /own/ {
    proxy_pass http://gunicorn;
    proxy_set_header X-Custom "mine";
}
location /included/ {
    proxy_pass http://gunicorn;
    include /srv/nginx/proxy.conf;
    proxy_set_header X-Custom "mine";
}
"""


@pytest.mark.image
def test_forwarded_headers_stay_safe_behind_a_conf_d_location(
        run_container: Callable[..., Any], scratch: Path) -> None:
    server = run_container(env={"APP_MODULE": "echo:app"},
                           args=(snippet(scratch, OWN_LOCATIONS),))
    seen = {path: requests.get(f"{server.base_url}{path}", headers={
                **FORGED, "X-Request-ID": f"forged-{path.strip('/')}"}, timeout=10).json()
            for path in ("/stack/", "/included/", "/own/")}
    client = access_log(server, "forged-stack")["forged-stack"]["client"]  # as Nginx saw it
    host = server.base_url.removeprefix("http://")
    forwarded = {"HTTP_X_FORWARDED_FOR": client, "HTTP_X_FORWARDED_PROTO": "http",
                 "HTTP_X_REAL_IP": client}
    for path in ("/stack/", "/included/"):  # the stack's own location, and one with the include
        assert (seen[path]["addr"], seen[path]["scheme"], seen[path]["host"]) == (
            client, "http", host), path
        assert {k: seen[path]["headers"].get(k) for k in forwarded} == forwarded, path
        assert not {"HTTP_FORWARDED", "HTTP_X_FORWARDED_HOST"} & set(seen[path]["headers"])
    # Without it the app loses the Host (Nginx's rule), but believes nothing forged.
    own = seen["/own/"]
    assert own["headers"]["HTTP_X_CUSTOM"] == "mine"
    assert own["addr"] != "6.6.6.6" and own["scheme"] == "http"
    assert not [key for key in own["headers"] if "FORWARDED" in key or "REAL_IP" in key], own
    assert "include /srv/nginx/proxy.conf" in server.logs()  # and the log says why
