"""The run directory: every path the stack's processes share, named once.

All that is written at run time lives here ($TMPDIR/stack, /tmp/stack in the
image): Gunicorn's socket, pid files, Nginx's rendered config, temp files and
status socket, Gunicorn's scoreboard, and the two markers the watchdog leaves.
The entrypoint makes it and tells the other processes where it is in
STACK_RUN_DIR. Only os.path: small enough for any process to import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "STACK_RUN_DIR"
# The run's secret that Nginx adds to every request it passes on through
# nginx/proxy.conf, so the app side knows the forwarded headers are the stack's.
PROXY_TOKEN_ENV = "STACK_PROXY_TOKEN"


class RunDir:
    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def under(cls, tmpdir: str) -> RunDir:
        return cls(os.path.join(tmpdir, "stack"))

    @classmethod
    def of_tmpdir(cls, environ: Mapping[str, str] = os.environ) -> RunDir:
        """Where the entrypoint makes it: under TMPDIR, /tmp by default."""
        return cls.under(environ.get("TMPDIR") or "/tmp")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RunDir:
        return cls(environ[ENV])

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    @property
    def gunicorn_socket(self) -> str:
        return self._path("gunicorn.sock")

    @property
    def nginx_conf(self) -> str:
        return self._path("nginx.conf")

    @property
    def nginx_pid(self) -> str:
        return self._path("nginx.pid")

    @property
    def supervisord_pid(self) -> str:
        return self._path("supervisord.pid")

    @property
    def nginx_status(self) -> str:
        """Nginx's stub_status, for the metrics: a socket, never a port."""
        return self._path("nginx-status.sock")

    @property
    def scoreboard(self) -> str:
        """Gunicorn's workers, for the metrics (stack/scoreboard.py)."""
        return self._path("scoreboard")

    @property
    def draining(self) -> str:
        """Present while the watchdog drains: Nginx answers /healthz with 503."""
        return self._path("draining")

    @property
    def failed(self) -> str:
        """Written by the watchdog with the reason it stopped the container."""
        return self._path("failed")

    def temp(self, kind: str) -> str:
        """Nginx's temp directory for one kind of buffered body (client_body, proxy, ...)."""
        return self._path(kind)
