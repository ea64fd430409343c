"""A stop signal at any moment of the start.

PID 1 ignores a signal it has no handler for, so before Supervisord runs
(settings, Nginx's config and its `nginx -t`, `prestart.py`) SIGTERM would wait
for the engine's SIGKILL. Here it ends the start at once: a child of the start
gets it first, in its whole process group, then SIGKILL if it does not end
within CHILD_GRACE_SECONDS; the container exits 128 + the signal's number
(143 for SIGTERM). Once Supervisord's own handlers take over, a signal that
came in between is handed to it (`handover`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # what `docker stop` and ^C send
CHILD_GRACE_SECONDS = 1.0
_pending: list[int] = []  # a stop signal that came after the start's last child


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def _remember(signum: int, _frame: Any) -> None:
    _pending.append(signum)


def interruptible() -> None:
    """From now on a stop signal raises Interrupted in the start's code."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


def quiet() -> None:
    """The start's last step: a stop signal is kept for Supervisord (`handover`)."""
    for signum in SIGNALS:
        signal.signal(signum, _remember)


def handover() -> None:
    """Once Supervisord's handlers are in place: the signal it missed, again."""
    for signum in _pending:
        os.kill(os.getpid(), signum)
    _pending.clear()


def run(command: Sequence[str], output: Callable[[bytes], None], **options: Any) -> int:
    """subprocess.run's exit code for a child in a process group of its own, which
    a stop signal reaches first (then Interrupted goes on up). What it writes on
    stdout and stderr goes to `output`, as it comes."""
    child = subprocess.Popen(command, process_group=0, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, **options)
    assert child.stdout is not None
    try:
        while data := child.stdout.read1(65536):
            output(data)
        return child.wait()
    except Interrupted as stop:
        quiet()  # a second signal must not cut the clean-up short
        _signal_group(child.pid, stop.signum)
        _signal_group(child.pid, signal.SIGCONT)  # should it be stopped
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(CHILD_GRACE_SECONDS)
        _signal_group(child.pid, signal.SIGKILL)  # and whatever it left in its group
        child.wait()
        raise


def reap(pid: int) -> int:
    """The exit code of a child forked by the start (our own code: no grace)."""
    try:
        _, status = os.waitpid(pid, 0)
    except Interrupted:
        quiet()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def in_child(function: Callable[..., int | None], *args: object) -> int:
    """Run `function` in a forked child and wait for it: what it imports (Jinja2,
    3 MB; Gunicorn's config) never weighs on the entrypoint, which lives on as
    Supervisord. The child's exit code: what `function` returns, 1 if it raised."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            code = function(*args) or 0
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return reap(pid)
