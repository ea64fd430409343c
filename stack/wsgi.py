"""What Gunicorn serves: the app APP_MODULE names, wrapped by the stack.

The stack, not the app, owns these, so any WSGI app runs unchanged:
- the health path: GET /healthz is answered in a Gunicorn worker, so a 200 proves
  Nginx, Gunicorn and the app's import (Nginx answers 503 itself while draining).
  A Flask app with its own /healthz route keeps it.
- the one trusted proxy hop: this image's Nginx sets X-Forwarded-For to the
  client's address alone and X-Forwarded-Proto itself (nginx/proxy.conf), so
  the app sees the real client and scheme, as Werkzeug's ProxyFix(x_for=1,
  x_proto=1) would make it. Written here rather than imported from Werkzeug: the
  stack must not pin a Werkzeug version against the app's own. Believed only
  beside the run's token, which proxy.conf adds: a request that a location of
  conf.d/ passed on without it has its forwarded headers removed instead, so
  a client can never forge them. Gunicorn, which trusts any peer on a UNIX
  socket, reads none of them itself (stack/gunicorn.conf.py).
- what the access log and the metrics say of a request: the route the app
  matched (a Flask app's URL rule, never the path) and the worker's pid, in
  headers that Nginx logs and keeps from the client.
- the app's `logging`: one JSON record per line, with the request's request_id
  and trace_id (stack/logformat.py), unless the app sets up handlers of its own.
- the path the app is mounted under: ROOT_PATH, or a trusted proxy's
  X-Forwarded-Prefix, becomes SCRIPT_NAME (PEP 3333), so that a Flask app's
  url_for builds links under it.
- server-sent events: Nginx, told so, passes each on as it comes.
- in development mode (DEV), templates read anew when they change, and
  Flask's debug off whatever FLASK_DEBUG says.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.util import import_app

from stack import workers
from stack.logformat import Formatter, stack_line
from stack.protocol import (
    HEALTH_PATH,
    PROXY_HEADER,
    ROUTE_HEADER,
    WORKER_HEADER,
    environ_key,
)
from stack.rundir import PROXY_TOKEN_ENV

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HEALTH_BODY = b'{"status": "ok"}\n'
# What a client may claim of where it came from: kept only from the stack's Nginx.
FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_SSL",
             "HTTP_X_FORWARDED_PROTOCOL", "HTTP_X_REAL_IP", "HTTP_FORWARDED")
TOKEN_KEY = environ_key(PROXY_HEADER)


def serve(app_module: str, log_level: str = "info", root_path: str = "",
          dev: bool = False) -> WSGIApp:
    """Gunicorn's `wsgi_app` (stack/gunicorn.conf.py): import the app, wrap it.
    Logging is set up first, so that an app's loggers find it as they are made."""
    app_logging(log_level)
    app = import_app(app_module)
    if dev and hasattr(app, "jinja_env"):
        # Flask's debug off, whatever FLASK_DEBUG says: an error then reaches the
        # app's own 500 handler, as in production, rather than propagating.
        app.debug = False
        app.config["TEMPLATES_AUTO_RELOAD"] = True  # Flask caches templates unless told
        app.jinja_env.auto_reload = True
    # Gunicorn started without the entrypoint (the benchmark's Gunicorn alone)
    # has no token: then no forwarded header is believed.
    return Stack(app, os.environ.get(PROXY_TOKEN_ENV, ""), root_path)


def app_logging(level: str) -> None:
    """The root logger's handler: the app's records, with their request's ids.
    Flask then adds no handler of its own (it finds this one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter("app", workers.request_context))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def routes_health(app: object) -> bool:
    """Whether a Flask (or any Werkzeug-routed) app has a GET /healthz route of its own."""
    url_map = getattr(app, "url_map", None)
    if url_map is None:
        return False
    try:
        url_map.bind("localhost").match(HEALTH_PATH, method="GET")
    except Exception:  # NotFound, MethodNotAllowed, or a redirect: not its own route
        return False
    return True


def last_value(header: str | None) -> str:
    """The value the one trusted hop added: the last of a comma-separated list."""
    return header.rsplit(",", 1)[-1].strip() if header else ""


class Stack:
    def __init__(self, app: WSGIApp, proxy_token: str, root_path: str = "") -> None:
        self.app = app
        self.root_path = root_path
        self.app_has_health = routes_health(app)
        self.routed = getattr(app, "url_map", None) is not None
        self.proxy_token = proxy_token
        self.warned = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        workers.begin(environ, start_response, self.routed)
        token = environ.pop(TOKEN_KEY, "")
        if self.proxy_token and hmac.compare_digest(token, self.proxy_token):
            self.forwarded(environ)
        else:
            self.untrusted(environ)
        self.mount(environ)
        if environ.get("PATH_INFO") == HEALTH_PATH and not self.app_has_health:
            return health(environ, self.named(environ, start_response, HEALTH_PATH))
        return self.app(environ, self.named(environ, start_response))

    def named(self, environ: dict[str, Any], start_response: Callable[..., Any],
              fixed: str | None = None) -> Callable[..., Any]:
        """start_response, with the route and the worker added to the headers."""
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append((ROUTE_HEADER, fixed or workers.route(environ, self.routed)))
            headers.append((WORKER_HEADER, str(os.getpid())))
            if streams_events(headers):  # Nginx passes each event on as it comes
                headers.append(("X-Accel-Buffering", "no"))
            return start_response(status, headers, exc_info)

        return start

    def forwarded(self, environ: dict[str, Any]) -> None:
        """The client and scheme the stack's Nginx passed on."""
        client = last_value(environ.get("HTTP_X_FORWARDED_FOR"))
        if client:
            environ["REMOTE_ADDR"] = client
        scheme = last_value(environ.get("HTTP_X_FORWARDED_PROTO")).lower()
        if scheme in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme

    def mount(self, environ: dict[str, Any]) -> None:
        """SCRIPT_NAME from ROOT_PATH (taken off PATH_INFO) and from the prefix a
        trusted proxy took off the URL (only the stack's Nginx passes it on)."""
        prefix = environ.pop("HTTP_X_FORWARDED_PREFIX", "")
        path = environ.get("PATH_INFO", "")
        root = self.root_path
        if root and (path == root or path.startswith(root + "/")):
            environ["PATH_INFO"] = path[len(root):] or "/"
            prefix += root
        if prefix:
            environ["SCRIPT_NAME"] = prefix + environ.get("SCRIPT_NAME", "")

    def untrusted(self, environ: dict[str, Any]) -> None:
        """A request Nginx passed on without nginx/proxy.conf: whatever it says of
        the client came from the client."""
        dropped = [key for key in FORWARDED if environ.pop(key, None) is not None]
        if dropped and not self.warned:
            self.warned = True  # once per worker: the cause is one location
            stack_line("stack", f"{environ.get('PATH_INFO')!r} came without the stack's "
                       "proxy headers (a location in nginx/conf.d/ that sets proxy_set_header "
                       "should include /srv/nginx/proxy.conf): removed " + ", ".join(dropped),
                       "warning")


def streams_events(headers: list[tuple[str, str]]) -> bool:
    """Server-sent events the app did not already tell Nginx about."""
    names = {name.lower(): value for name, value in headers}
    return (names.get("content-type", "").startswith("text/event-stream")
            and "x-accel-buffering" not in names)


def health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """200 to GET and HEAD; any other method gets a 405 shaped like every other error."""
    method = environ.get("REQUEST_METHOD")
    if method in ("GET", "HEAD"):
        status, body, extra = "200 OK", HEALTH_BODY, []
    else:
        status, extra = "405 Method Not Allowed", [("Allow", "GET, HEAD")]
        body = json.dumps({"error": "Method Not Allowed", "status": 405,
                           "request_id": environ.get("HTTP_X_REQUEST_ID")}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), *extra])
    return [] if method == "HEAD" else [body]
