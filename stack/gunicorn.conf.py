"""Gunicorn configuration, rendered from stack.settings (GUNICORN_CMD_ARGS still overrides it)."""

from gunicorn import util

from stack import workers as _workers
from stack.rundir import RunDir
from stack.settings import load

_settings = load()
_run = RunDir.from_env()

# The app wrapped by the stack (health path, proxy hop, route, logging): stack/wsgi.py.
wsgi_app = (f"stack.wsgi:serve({_settings.app_module!r}, {_settings.log_level!r}, "
            f"{_settings.root_path!r}, {_settings.dev!r})")
chdir = _settings.app_dir
# Only the UNIX socket; umask 077 makes it usable by this user alone (Nginx runs as it too).
bind = [f"unix:{_run.gunicorn_socket}"]
umask = 0o077
control_socket_disable = True
# Gunicorn trusts any peer on a UNIX socket with the scheme headers: the stack's
# wrapper decides instead, and only for what its Nginx vouched for (stack/wsgi.py).
secure_scheme_headers: dict[str, str] = {}

workers = _settings.gunicorn_workers
# The stack's subclasses of Gunicorn's own, which bound every request by TIMEOUT.
worker_class = {"gthread": "stack.workers.ThreadWorker",
                "sync": "stack.workers.SyncWorker"}[_settings.worker_class]
threads = _settings.gunicorn_threads
# Import the app once in the master: workers fork fast and share memory, and an
# app that cannot import stops the master at once (the container fails fast).
preload_app = not _settings.dev
worker_tmp_dir = _run.root
# Development (DEV): a worker started again when a module of the app changes,
# found by Gunicorn's own poller (no inotify package in the image), and the app
# imported in the worker, which alone can import it anew.
reload = _settings.dev
reload_engine = "poll"

max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter

timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.gunicorn_keepalive

loglevel = _settings.log_level
errorlog = "-"
accesslog = None  # Nginx writes the access log, with the request id.
logger_class = "stack.workers.Logger"  # the container's line shape (stack/logformat.py)

# The scoreboard the metrics read (stack/scoreboard.py).
on_starting = _workers.on_starting
pre_fork = _workers.pre_fork
post_fork = _workers.post_fork
worker_exit = _workers.worker_exit
child_exit = _workers.child_exit


# Gunicorn's own answers (a request it refuses before the app: a control
# character in a header, an odd method, over 100 headers, a request line over
# 4094 bytes) in the shape of the app's and Nginx's errors, not an HTML page,
# so Nginx need not intercept upstream errors and the app's keep their bodies.
# Workers are forked from this process: they call it too.
util.write_error = _workers.write_json_error
