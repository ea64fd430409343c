"""The run directory: every path the stack's processes share, named once.

All that is written at run time lives here ($TMPDIR/stack, /tmp/stack in the
image): Gunicorn's socket, pid files, Nginx's rendered config and temp files,
and the two markers the watchdog leaves. The entrypoint makes it and tells the
other processes where it is in STACK_RUN_DIR. Only os.path: small enough for any
process to import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "STACK_RUN_DIR"


class RunDir:
    def __init__(self, root: str) -> None:
        self.root = root

    @classmethod
    def under(cls, tmpdir: str) -> RunDir:
        return cls(os.path.join(tmpdir, "stack"))

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
