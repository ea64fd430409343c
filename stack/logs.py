"""Every line the container writes, in one stream on stdout, written by PID 1.

What comes in, and as what it goes out (the shape: stack/logformat.py):
- Nginx's access log, through its pipe (stack/accesslog.py): each line is a
  JSON record already, and feeds the request metrics (stack/metrics.py);
- the output of Gunicorn and Nginx, as Supervisord's process-log events: a line
  that is a record already (Gunicorn's error log, the app's `logging`, the
  stack's own) goes out as it is; Nginx's error log is parsed; anything else
  Gunicorn's processes print is the app's, one record per line (a traceback
  printed as text stays one record);
- Supervisord's own log, through a handler of its logger;
- the stack's own lines (the entrypoint, the watchdog).

stdout never stops PID 1 from supervising: it is written without blocking,
from a buffer of MAX_BUFFER bytes; while the reader is stalled (a full pipe)
what does not fit is dropped and counted, and once it reads again one line
says how many were lost. A reader that is gone (EPIPE) only makes every line
count as dropped. At stop, what is left gets FINAL_FLUSH_SECONDS at most.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from typing import Any

from supervisor import loggers

from stack.accesslog import PIPE_SIZE, AccessLog
from stack.logformat import level_of, nginx_fields, record, render

FLUSH_SECONDS = 0.2  # an access log line reaches stdout at most this late (plus one write)
LATE_SECONDS = 1.0  # what the docs promise of every line: FLUSH_SECONDS, a write, and room
MAX_BUFFER = 8 << 20  # bytes waiting for a stalled stdout before lines are dropped
FINAL_FLUSH_SECONDS = 2.0
TRACEBACK = "Traceback (most recent call last):"


class Output:
    """fd 1, never blocking: a buffer, written out as far as the reader takes it."""

    def __init__(self, text: bool, fd: int = 1) -> None:
        self.text = text
        # A description of its own, opened anew, is what stops blocking: fd 1's is
        # shared (with fd 2, with a terminal's other users), and must stay as it is.
        self.fd = os.open(f"/proc/self/fd/{fd}",
                          os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC)
        self.buffer = bytearray()
        self.dropped = 0  # lines lost since the container started
        self.unreported = 0  # of those, lost since the last line that said so

    def write(self, data: bytes, lines: int = 1) -> None:
        if len(self.buffer) + len(data) > MAX_BUFFER:
            self.dropped += lines
            self.unreported += lines
            return
        self.buffer += data

    def waiting(self) -> bool:
        """Whether lines wait for the reader."""
        return bool(self.buffer)

    def flush(self, seconds: float = 0.0) -> None:
        """Write what the reader takes now, waiting up to `seconds` for it."""
        deadline = time.monotonic() + seconds
        while self.buffer:
            try:
                written = os.write(self.fd, self.buffer)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                select.select([], [self.fd], [], left)
                continue
            except OSError:  # the reader is gone (EPIPE) or the write failed
                lost = self.buffer.count(b"\n")
                self.dropped += lost
                self.unreported += lost
                self.buffer.clear()
                return
            del self.buffer[:written]
        if self.unreported:
            lost, self.unreported = self.unreported, 0
            self.buffer += (render(record("stack", "warning", f"{lost} log lines were lost: "
                                          "stdout was full or closed"), self.text) + "\n").encode()


class Router:
    def __init__(self, output: Output, text: bool, access_log: AccessLog | None = None,
                 print_access: bool = True,
                 on_access: Callable[[bytes], None] | None = None) -> None:
        self.output = output
        self.text = text
        self.access_log = access_log
        self.print_access = print_access
        self.on_access = on_access
        self.partial: dict[tuple[str, str], bytes] = {}
        self.traceback: dict[tuple[str, str], list[str]] = {}
        self.due = time.monotonic() + FLUSH_SECONDS
        # Read the access log as lines come, not only every FLUSH_SECONDS: its
        # pipe is small, or filled fast (stack/accesslog.py).
        self.urgent = access_log is not None and access_log.size < PIPE_SIZE
        self.taken = 0  # bytes of access log taken since the last tick

    # --- lines in

    def line(self, fields: dict[str, Any]) -> None:
        self.output.write((render(fields, self.text) + "\n").encode(errors="replace"))

    def stack(self, message: str, level: str = "info", source: str = "stack",
              **extra: Any) -> None:
        self.line(record(source, level, message, **extra))

    def program_output(self, program: str, channel: str, data: bytes) -> None:
        """A chunk of a program's stdout or stderr, as Supervisord read it."""
        key = (program, channel)
        data = self.partial.pop(key, b"") + data
        *lines, rest = data.split(b"\n")
        if rest:
            self.partial[key] = rest
        for raw in lines:
            self.program_line(key, raw.decode(errors="replace"))
        self.output.flush()  # a program's lines are few: out at once, without waiting

    def close_program(self, program: str) -> None:
        """A program has ended: its last line, though it had no newline."""
        for key in [key for key in self.partial if key[0] == program]:
            self.program_line(key, self.partial.pop(key).decode(errors="replace"))
        for key in [key for key in self.traceback if key[0] == program]:
            self.end_traceback(key)

    def program_line(self, key: tuple[str, str], text: str) -> None:
        program, channel = key
        pending = self.traceback.get(key)
        if pending is not None:  # a traceback printed as text: one record
            pending.append(text)
            if text[:1] not in (" ", "\t", "") and not text.startswith("During handling"):
                self.end_traceback(key)
            return
        if text.startswith("{"):
            try:
                fields = json.loads(text)
            except ValueError:
                fields = None
            if isinstance(fields, dict) and "source" in fields:
                if self.text:
                    self.line(fields)
                else:  # a record already: as it is, not parsed and written again
                    self.output.write(text.encode(errors="replace") + b"\n")
                return
        if program == "nginx":
            self.line(nginx_fields(text))
        elif not text.strip():
            return
        elif text == TRACEBACK:
            self.traceback[key] = [text]
        else:
            self.line(record("app", "error" if channel == "stderr" else "info", text))

    def end_traceback(self, key: tuple[str, str]) -> None:
        lines = self.traceback.pop(key)
        self.line(record("app", "error", lines[-1], exception="\n".join(lines)))

    def supervisor_logger(self, level: int) -> loggers.Logger:
        """Supervisord's own logger, whose every line comes here."""
        logger = loggers.Logger(level)
        handler = _SupervisorHandler(self)
        handler.setLevel(level)
        logger.addHandler(handler)
        return logger

    # --- lines out

    def timeout(self, timeout: float) -> float:
        """A poll's timeout, shortened so that the next tick is on time."""
        return max(0.0, min(timeout, self.due - time.monotonic()))

    def tick(self) -> None:
        """Every FLUSH_SECONDS, from Supervisord's poll loop."""
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + FLUSH_SECONDS
        self.take_access_log()
        if self.access_log is not None:
            self.urgent = (self.access_log.size < PIPE_SIZE
                           or self.taken >= self.access_log.size // 4)
            self.taken = 0
        for key in list(self.traceback):  # nothing more came: it ended there
            self.end_traceback(key)
        self.output.flush()

    def take_access_log(self, final: bool = False) -> None:
        if self.access_log is None:
            return
        data = self.access_log.take(final)
        self.taken += len(data)
        if not data:
            return
        lines = data.splitlines()
        for raw in lines if self.on_access or self.text else ():
            if self.on_access:
                self.on_access(raw)
            if self.print_access and self.text:
                self.line(access_fields(raw))
        if self.print_access and not self.text:
            self.output.write(data if data.endswith(b"\n") else data + b"\n", len(lines))

    def close(self) -> None:
        """At stop, once the programs have ended: the rest, for a bounded time."""
        self.take_access_log(final=True)
        for program in {key[0] for key in (*self.partial, *self.traceback)}:
            self.close_program(program)
        self.output.flush(FINAL_FLUSH_SECONDS)


def access_fields(raw: bytes) -> dict[str, Any]:
    """An access log line's fields."""
    try:
        fields = json.loads(raw)
    except ValueError:
        fields = None
    if isinstance(fields, dict):
        return fields
    # Not Nginx's: it would be a bug of ours, still shown.
    return record("nginx", "error", raw.decode(errors="replace"))


class _SupervisorHandler(loggers.Handler):  # type: ignore[misc]
    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def emit(self, entry: Any) -> None:
        fields = entry.asdict()
        self.router.stack(fields["message"].rstrip("\n"), level_of(fields["levelname"]),
                          source="supervisord")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
