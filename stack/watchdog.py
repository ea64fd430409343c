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

from stack.rundir import RunDir

# No supervisor.childutils and no stack.settings here: importing them costs this
# long-lived process 10 MB (childutils pulls in xmlrpc and importlib.metadata),
# and the event listener protocol below is three lines of it.

CRASHES = 5  # unexpected exits of one program...
CRASH_WINDOW_SECONDS = 60  # ...within this long count as a crash loop


def log(message: str) -> None:
    print(f"watchdog: {message}", file=sys.stderr, flush=True)


def fail(run: RunDir, reason: str) -> None:
    log(f"{reason}; stopping the container")
    with open(run.failed, "w") as marker:
        marker.write(reason + "\n")
    os.kill(os.getppid(), signal.SIGTERM)


def drain(run: RunDir, seconds: int) -> None:
    """On SIGTERM: with draining on, /healthz answers 503 for `seconds`, then exit."""
    if seconds and not os.path.exists(run.failed):
        open(run.draining, "w").close()
        log(f"draining: /healthz answers 503 for {seconds} s before the stop")
        time.sleep(seconds)
    sys.exit(0)


def next_event() -> tuple[str, dict[str, str]]:
    """Supervisord's event listener protocol: READY, a header line, a payload of `len`."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    headers = dict(token.split(":", 1) for token in sys.stdin.readline().split())
    payload = sys.stdin.read(int(headers["len"]))
    fields = dict(token.split(":", 1) for token in payload.split("\n", 1)[0].split())
    return headers["eventname"], fields


def main() -> None:
    run = RunDir.from_env()
    drain_seconds = int(os.environ["STACK_DRAIN_SECONDS"])  # validated by the entrypoint
    signal.signal(signal.SIGTERM, lambda _signum, _frame: drain(run, drain_seconds))
    crashes: defaultdict[str, deque[float]] = defaultdict(deque)
    while True:
        event, fields = next_event()
        name = fields["processname"]
        if event == "PROCESS_STATE_FATAL":
            fail(run, f"{name} could not start")
        elif event == "PROCESS_STATE_EXITED" and fields.get("expected") == "0":
            now = time.monotonic()
            recent = crashes[name]
            recent.append(now)
            while recent[0] < now - CRASH_WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= CRASHES:
                fail(run, f"{name} crashed {len(recent)} times in {CRASH_WINDOW_SECONDS} s")
        sys.stdout.write("RESULT 2\nOK")  # done with this event
        sys.stdout.flush()


if __name__ == "__main__":
    main()
