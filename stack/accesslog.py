"""The access log's way out: Nginx writes each line into a pipe the entrypoint
holds, and the entrypoint (PID 1, running Supervisord) copies what has gathered
there to its stdout every FLUSH_SECONDS, in one write.

Nginx writing each line straight to the container's stdout cost a fifth of the
requests/s: one write per request into the engine's log pipe, and the engine's
log reader (conmon, under Podman) woken for each (docs/performance.md). A pipe
of our own keeps Nginx's one write() per line, but only the kernel sees it.
Nothing is lost on the way: a line is in the pipe's kernel buffer once Nginx's
write() returns, so a killed Nginx worker takes none with it; on stop,
Supervisord has stopped Nginx before the entrypoint drains the rest. A full pipe
(1 MiB, several hundred ms of lines at full load) makes Nginx wait, never drop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

FLUSH_SECONDS = 0.2  # a line reaches stdout at most this late (plus one write)
PIPE_SIZE = 1 << 20  # Linux's pipe-max-size for unprivileged users


class AccessLog:
    """The pipe: Nginx opens `path` (its write end, through /proc, as it opened
    our stdout before); `flush` copies whole lines to fd 1."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._read, False)
        # A smaller pipe still works: Nginx would wait for the next flush sooner.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.path = f"/proc/{os.getpid()}/fd/{self._write}"
        self._due = time.monotonic() + FLUSH_SECONDS
        self._partial = b""

    def timeout(self, timeout: float) -> float:
        """A poll's timeout, shortened so the next flush is on time."""
        return max(0.0, min(timeout, self._due - time.monotonic()))

    def flush_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._due:
            self.flush()
            self._due = now + FLUSH_SECONDS

    def flush(self, final: bool = False) -> None:
        """Everything in the pipe to stdout, up to its last whole line (all of it
        when `final`): a line over PIPE_BUF may arrive in two reads."""
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
        view = memoryview(data)[:cut]
        while view:
            view = view[os.write(1, view):]
