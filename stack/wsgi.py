"""What Gunicorn serves: the app APP_MODULE names, wrapped by the stack.

The stack, not the app, owns two things, so any WSGI app runs unchanged:
- the health path: GET /healthz is answered in a Gunicorn worker, so a 200 proves
  Nginx, Gunicorn and the app's import (Nginx answers 503 itself while draining).
  A Flask app with its own /healthz route keeps it.
- the one trusted proxy hop: this image's Nginx sets X-Forwarded-For to the
  client's address alone and X-Forwarded-Proto itself (nginx/nginx.conf.j2), so
  the app sees the real client and scheme, as Werkzeug's ProxyFix(x_for=1,
  x_proto=1) would make it. Written here rather than imported from Werkzeug: the
  stack must not pin a Werkzeug version against the app's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.util import import_app

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HEALTH_PATH = "/healthz"
HEALTH_BODY = b'{"status": "ok"}\n'


def serve(app_module: str) -> WSGIApp:
    """Gunicorn's `wsgi_app` (stack/gunicorn.conf.py): import the app, wrap it."""
    return Stack(import_app(app_module))


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
    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.app_has_health = routes_health(app)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        client = last_value(environ.get("HTTP_X_FORWARDED_FOR"))
        if client:
            environ["REMOTE_ADDR"] = client
        scheme = last_value(environ.get("HTTP_X_FORWARDED_PROTO")).lower()
        if scheme in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme
        if environ.get("PATH_INFO") == HEALTH_PATH and not self.app_has_health:
            return health(environ, start_response)
        return self.app(environ, start_response)


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
