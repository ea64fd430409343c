"""Supervisord event listener that owns the container's lifecycle.

- Fail fast: when Gunicorn or Nginx cannot start (FATAL) or keeps crashing, it
  records why and stops Supervisord, so the container exits 1 instead of
  staying up and answering 502.
- Drain: Supervisord stops it first on SIGTERM; with DRAIN_SECONDS set it makes
  /healthz answer 503 (Nginx checks the `draining` file) and waits that long
  before Gunicorn and Nginx are stopped.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from types import FrameType

from supervisor import childutils

from stack.settings import load

CRASHES = 5  # unexpected exits of one program...
CRASH_WINDOW_SECONDS = 60  # ...within this long count as a crash loop

RUN_DIR = Path(os.environ["STACK_RUN_DIR"])


def log(message: str) -> None:
    print(f"watchdog: {message}", file=sys.stderr, flush=True)


def fail(reason: str) -> None:
    log(f"{reason}; stopping the container")
    (RUN_DIR / "failed").write_text(reason + "\n")
    os.kill(os.getppid(), signal.SIGTERM)


def on_stop(_signum: int, _frame: FrameType | None) -> None:
    drain_seconds = load().drain_seconds
    if drain_seconds and not (RUN_DIR / "failed").exists():
        (RUN_DIR / "draining").touch()
        log(f"draining: /healthz answers 503 for {drain_seconds} s before the stop")
        time.sleep(drain_seconds)
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, on_stop)
    crashes: defaultdict[str, deque[float]] = defaultdict(deque)
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers["eventname"]
        fields, _ = childutils.eventdata(payload + "\n")
        name = fields["processname"]
        if event == "PROCESS_STATE_FATAL":
            fail(f"{name} could not start")
        elif event == "PROCESS_STATE_EXITED" and fields.get("expected") == "0":
            now = time.monotonic()
            recent = crashes[name]
            recent.append(now)
            while recent[0] < now - CRASH_WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= CRASHES:
                fail(f"{name} crashed {len(recent)} times in {CRASH_WINDOW_SECONDS} s")
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
