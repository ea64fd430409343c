"""The container's lifecycle, inside Supervisord: fail fast, and drain on stop.

- Fail fast: when Gunicorn or Nginx cannot start (FATAL) or keeps crashing, it
  records why and shuts Supervisord down, so the container exits 1 instead of
  staying up and answering 502.
- Drain: on SIGTERM with DRAIN_SECONDS set, /healthz answers 503 (Nginx checks
  the `draining` file) for that long before Supervisord stops Nginx, then
  Gunicorn.

Supervisord's own loop does this (the entrypoint runs it in PID 1), from the
process-state events and the stop signal an event listener would get: no
process of its own, which saves one Python process's memory (docs/performance.md).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import defaultdict, deque
from typing import Any

from supervisor import events, options, supervisord
from supervisor.states import SupervisorStates

from stack.rundir import RunDir

CRASHES = 5  # unexpected exits of one program...
CRASH_WINDOW_SECONDS = 60  # ...within this long count as a crash loop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def log(message: str) -> None:
    print(f"watchdog: {message}", file=sys.stderr, flush=True)


class Watchdog(supervisord.Supervisor):  # type: ignore[misc]
    """Supervisord's Supervisor, with the fail-fast and the drain."""

    def __init__(self, options_: Any, run: RunDir, drain_seconds: int) -> None:
        super().__init__(options_)
        self.run_dir = run
        self.drain_seconds = drain_seconds
        self.drain = "off" if drain_seconds else "none"  # then: asked, on, over
        self.crashes: defaultdict[str, deque[float]] = defaultdict(deque)
        options_.signal_receiver = _Receiver(self)

    def runforever(self) -> None:
        # Subscribed here: Supervisor.run() clears every subscription first.
        events.subscribe(events.ProcessStateFatalEvent, self.on_fatal)
        events.subscribe(events.ProcessStateExitedEvent, self.on_exit)
        super().runforever()

    def on_fatal(self, event: Any) -> None:
        self.fail(f"{event.process.config.name} could not start")

    def on_exit(self, event: Any) -> None:
        if event.expected:
            return
        now = time.monotonic()
        recent = self.crashes[event.process.config.name]
        recent.append(now)
        while recent[0] < now - CRASH_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= CRASHES:
            self.fail(f"{event.process.config.name} crashed {len(recent)} times "
                      f"in {CRASH_WINDOW_SECONDS} s")

    def fail(self, reason: str) -> None:
        if self.options.mood < SupervisorStates.RUNNING:
            return  # already stopping
        log(f"{reason}; stopping the container")
        with open(self.run_dir.failed, "w") as marker:
            marker.write(reason + "\n")
        self.drain = "none"  # a failed container has nothing to drain
        self.options.mood = SupervisorStates.SHUTDOWN

    def holds_stop(self) -> bool:
        """Whether a stop signal waits for the drain (the signal handler asks)."""
        if self.drain == "off":
            self.drain = "asked"
        return self.drain in ("asked", "on")

    def handle_signal(self) -> None:
        if self.drain == "asked":  # here, not in the signal handler: it writes and logs
            self.drain = "on"
            open(self.run_dir.draining, "w").close()
            log(f"draining: /healthz answers 503 for {self.drain_seconds} s before the stop")
            # A timer thread, not alarm(): the seccomp profile allows no timer syscalls.
            timer = threading.Timer(self.drain_seconds, self.end_drain)
            timer.daemon = True  # a stop for another reason does not wait for it
            timer.start()
        super().handle_signal()

    def end_drain(self) -> None:
        """The drain is over: the stop signal again, which now goes through (Supervisord
        stops Nginx, then Gunicorn); being a signal, it wakes Supervisord's poll at once."""
        self.drain = "over"
        os.kill(os.getpid(), signal.SIGTERM)


class _Receiver(options.SignalReceiver):  # type: ignore[misc]
    """Supervisord's signal queue, holding back a stop signal while the container drains."""

    def __init__(self, watchdog: Watchdog) -> None:
        super().__init__()
        self.watchdog = watchdog

    def receive(self, sig: int, frame: Any) -> None:
        if sig in STOP_SIGNALS and self.watchdog.holds_stop():
            return
        super().receive(sig, frame)
