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

import functools
import os
import signal
import threading
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

from supervisor import events, options, supervisord
from supervisor.states import SupervisorStates

from stack import start
from stack.logs import Router
from stack.rundir import RunDir

if TYPE_CHECKING:
    from stack.metrics import Metrics

CRASHES = 5  # unexpected exits of one program...
CRASH_WINDOW_SECONDS = 60  # ...within this long count as a crash loop


class Watchdog(supervisord.Supervisor):  # type: ignore[misc]
    """Supervisord's Supervisor, with the fail-fast and the drain."""

    def __init__(self, options_: Any, run: RunDir, drain_seconds: int, router: Router,
                 metrics: Metrics | None = None) -> None:
        super().__init__(options_)
        self.run_dir = run
        self.drain_seconds = drain_seconds
        self.drain = "off" if drain_seconds else "none"  # then: asked, on, over
        self.crashes: defaultdict[str, deque[float]] = defaultdict(deque)
        self.router = router
        self.metrics = metrics
        options_.signal_receiver = _Receiver(self)
        options_.make_logger = functools.partial(_make_logger, options_, router)

    def log(self, message: str, level: str = "info") -> None:
        self.router.stack(message, level, logger="watchdog")

    def runforever(self) -> None:
        # Subscribed here: Supervisor.run() clears every subscription first.
        events.subscribe(events.ProcessStateFatalEvent, self.on_fatal)
        events.subscribe(events.ProcessStateExitedEvent, self.on_exit)
        events.subscribe(events.ProcessLogEvent, self.on_output)
        start.handover()  # a stop signal from the last moments of the start
        super().runforever()

    def on_fatal(self, event: Any) -> None:
        self.fail(f"{event.process.config.name} could not start")

    def on_output(self, event: Any) -> None:
        """What a program wrote, which Supervisord read (stdout_events_enabled)."""
        self.router.program_output(event.process.config.name, event.channel, event.data)

    def on_exit(self, event: Any) -> None:
        self.router.close_program(event.process.config.name)
        if event.expected:
            return
        if self.metrics and event.process.config.name == "gunicorn":
            self.metrics.master_restarts.inc()
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
        self.log(f"{reason}; stopping the container", "error")
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
            self.log(f"draining: /healthz answers 503 for {self.drain_seconds} s before the stop")
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
        if sig in start.SIGNALS and self.watchdog.holds_stop():
            return
        super().receive(sig, frame)


def _make_logger(options_: Any, router: Router) -> None:
    """Supervisord's options.make_logger: its lines to the router, not to stdout."""
    options_.logger = router.supervisor_logger(options_.loglevel)
    for level, messages in (("critical", options_.parse_criticals),
                            ("warning", options_.parse_warnings),
                            ("info", options_.parse_infos)):
        for message in messages:
            router.stack(message, level, source="supervisord")
