"""The shape of every line the container logs: one JSON object with `time`,
`level`, `source` and `message` (LOG_FORMAT=json, the default), or the same as
a line of text for a person at a terminal (LOG_FORMAT=text).

Written here once, for every process that writes a line: PID 1 (the stack's
own lines, Supervisord's, and what it wraps of Nginx's and the app's), and
Gunicorn's processes through Python's logging (Gunicorn's error log and the
app's `logging`, which carries the request's `request_id` and `trace_id`).
Only the standard library: every process may import it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

SOURCES = ("nginx", "gunicorn", "supervisord", "stack", "app")
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMAT_ENV = "LOG_FORMAT"
# Python's, Nginx's and Supervisord's level names, as ours.
LEVEL_NAMES = {"debug": "debug", "info": "info", "notice": "info", "warn": "warning",
               "warning": "warning", "error": "error", "crit": "critical",
               "critical": "critical", "alert": "critical", "emerg": "critical",
               "blather": "debug", "trace": "debug",
               # Supervisord's
               "erro": "error", "debg": "debug", "trac": "debug", "blat": "debug"}
# Nginx's error log: "2026/12/02 17:39:49 [error] 12#12: *5 message".
NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (?:\d+#\d+: )?(.*)$", re.S)


def now() -> str:
    """The time as every line gives it: UTC, ISO 8601, milliseconds."""
    seconds = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds % 1 * 1000):03d}Z"


def level_of(name: str) -> str:
    return LEVEL_NAMES.get(name.lower(), "info")


def render(fields: Mapping[str, Any], text: bool) -> str:
    """One line, without its newline: JSON, or `TIME LEVEL SOURCE message key=value...`."""
    if not text:
        return json.dumps(fields, ensure_ascii=False, default=str, separators=(",", ":"))
    extra = " ".join(f"{key}={value}" for key, value in fields.items()
                     if key not in ("time", "level", "source", "message", "exception")
                     and value not in (None, ""))
    line = (f"{fields.get('time', '')} {str(fields.get('level', '')).upper():8} "
            f"{fields.get('source', '')}: {fields.get('message', '')}")
    line = f"{line}  {extra}" if extra else line
    exception = fields.get("exception")
    return f"{line}\n{exception.rstrip()}" if exception else line


def record(source: str, level: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"time": now(), "level": level, "source": source, "message": message, **extra}


def text_format(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(FORMAT_ENV, "json").strip().lower() == "text"


def stack_line(source: str, message: str, level: str = "info", **extra: Any) -> None:
    """A line of the stack's own (the entrypoint, the watchdog, start_nginx) on
    stderr, for a process with no stdout of PID 1's to write to."""
    sys.stderr.write(render(record(source, level, message, **extra), text_format()) + "\n")
    sys.stderr.flush()


def nginx_fields(line: str) -> dict[str, Any]:
    """A line of Nginx's error log (or of `nginx -t`) as a record."""
    match = NGINX_LINE.match(line)
    if match:
        return record("nginx", level_of(match[1]), match[2])
    return record("nginx", "error" if "[emerg]" in line else "info",
                  line.removeprefix("nginx: "))


class Formatter(logging.Formatter):
    """Python logging's records in the container's shape, for Gunicorn's error log
    (`source` gunicorn) and the app's loggers (`source` app). `context` gives what
    the request being served adds (its request_id and trace_id)."""

    def __init__(self, source: str, context: Callable[[], Mapping[str, Any]] | None = None,
                 text: bool | None = None) -> None:
        super().__init__()
        self.source = source
        self.context = context
        self.text = text_format() if text is None else text

    def format(self, record_: logging.LogRecord) -> str:
        fields = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record_.created))
            + f".{int(record_.msecs):03d}Z",
            "level": level_of(record_.levelname),
            "source": self.source,
            "message": record_.getMessage(),
            "logger": record_.name,
            "pid": record_.process,
        }
        if self.context:
            fields.update(self.context())
        if record_.exc_info:  # the traceback stays in its line's object
            fields["exception"] = "".join(traceback.format_exception(*record_.exc_info))
        elif record_.stack_info:
            fields["exception"] = record_.stack_info
        return render(fields, self.text)
