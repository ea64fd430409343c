"""The access log's way in: Nginx writes each line into a pipe the entrypoint
holds, and the entrypoint (PID 1, running Supervisord) takes what has gathered
there every FLUSH_SECONDS, for the metrics and for stdout (stack/logs.py), in
one write.

Nginx writing each line straight to the container's stdout cost a fifth of the
requests/s: one write per request into the engine's log pipe, and the engine's
log reader (conmon, under Podman) woken for each (docs/performance.md). A pipe
of our own keeps Nginx's one write() per line, but only the kernel sees it.
Nothing is lost on the way: a line is in the pipe's kernel buffer once Nginx's
write() returns, so a killed Nginx worker takes none with it; on stop,
Supervisord has stopped Nginx before the entrypoint drains the rest. A full pipe
makes Nginx wait, never drop; so the entrypoint also reads as lines come
(stack/logs.py, `Router.urgent`) whenever the pipe could fill before the next
take: when it could not be made PIPE_SIZE (the kernel gives a user's new pipes
8 KiB once its pipes hold fs.pipe-user-pages-soft pages, 64 MiB by default: a
few dozen containers running as the same UID on one host), or when a quarter
of it filled between two takes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

PIPE_SIZE = 1 << 20  # Linux's pipe-max-size for unprivileged users: 0.2 s of lines at 10k req/s


class AccessLog:
    """The pipe: Nginx opens `path` (its write end, through /proc, as it opened
    our stdout before); `take` reads the whole lines gathered there."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._read, False)
        # Refused (EPERM) once the user's pipes hold their share of the kernel's
        # memory: then the pipe stays as small as it was made.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.size = fcntl.fcntl(self._write, fcntl.F_GETPIPE_SZ)
        self.fd = self._read  # for a poller: readable when a line is there
        self.path = f"/proc/{os.getpid()}/fd/{self._write}"
        self._partial = b""

    def take(self, final: bool = False) -> bytes:
        """Everything in the pipe up to its last whole line (all of it when
        `final`): a line over PIPE_BUF may arrive in two reads."""
        chunks = [self._partial]
        while True:
            try:
                data = os.read(self._read, PIPE_SIZE)
            except BlockingIOError:
                break
            if not data:  # cannot happen while we hold the write end
                break
            chunks.append(data)
        data = b"".join(chunks)
        cut = len(data) if final else data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut]
