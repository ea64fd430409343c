"""Gunicorn configuration, rendered from stack.settings (GUNICORN_CMD_ARGS still overrides it)."""

import json

from gunicorn import util

from stack.rundir import RunDir
from stack.settings import load

_settings = load()
_run = RunDir.from_env()

# The app wrapped by the stack (health path, proxy hop): stack/wsgi.py.
wsgi_app = f"stack.wsgi:serve({_settings.app_module!r})"
chdir = _settings.app_dir
# Only the UNIX socket; umask 077 makes it usable by this user alone (Nginx runs as it too).
bind = [f"unix:{_run.gunicorn_socket}"]
umask = 0o077
control_socket_disable = True

workers = _settings.web_concurrency
worker_class = _settings.worker_class
threads = _settings.gunicorn_threads
# Import the app once in the master: workers fork fast and share memory, and an
# app that cannot import stops the master at once (the container fails fast).
preload_app = True
worker_tmp_dir = _run.root

max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter

timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.gunicorn_keepalive

loglevel = _settings.log_level
errorlog = "-"
accesslog = None  # Nginx writes the access log, with the request id.


def _json_error(sock, status_int, reason, mesg):  # type: ignore[no-untyped-def]
    """Gunicorn's own answers in the shape of the app's and Nginx's errors, not
    an HTML page: a request it refuses before the app (a control character in a
    header, an odd method, over 100 headers, a request line over 4094 bytes) or
    a sync worker stopped at TIMEOUT. So Nginx need not intercept upstream
    errors, and the app's own keep their bodies. Gunicorn has not read the
    request id here: the X-Request-ID header has it."""
    body = json.dumps({"error": reason, "status": status_int, "request_id": None}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _json_error  # workers are forked from this process: they call it too
