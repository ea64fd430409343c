"""Start Nginx for Supervisord: `python -m stack.start_nginx nginx ARG...`.

- Only once Gunicorn's socket accepts, so Nginx opens port 1300 when Gunicorn is
  ready behind it, and early requests never meet a 502.
- Only once the workers of a crashed Nginx master are gone: killed with -9, a
  master leaves its workers holding port 1300, and the new master could not
  bind it. They get SIGQUIT (finish in-flight requests, then exit) first. Its
  status socket's file stays too: it is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time

from stack import procfs
from stack.logformat import stack_line
from stack.rundir import RunDir

POLL_SECONDS = 0.05
REPORT_EVERY_SECONDS = 10
ORPHANS_GRACE_SECONDS = 10  # then SIGKILL; Nginx's own worker_shutdown_timeout is shorter


def say(message: str, level: str) -> None:
    stack_line("stack", message, level, logger="start_nginx")


def accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def wait_for_gunicorn(path: str) -> None:
    started = last_report = time.monotonic()
    while not accepts(path):
        # No deadline: if Gunicorn cannot start, the watchdog stops the container.
        if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
            last_report = time.monotonic()
            waited = last_report - started
            say(f"{path} not accepting after {waited:.0f} s", "warning")
        time.sleep(POLL_SECONDS)


def orphans(group: int) -> list[int]:
    """The Nginx processes left in a crashed master's process group. A pid file
    of this run's names it, but its number may since have gone to another group
    of this stack (this very process's, even): only Nginx's members count."""
    found = [process.pid for process in procfs.stats()
             if process.pgrp == group and process.name == "nginx"]
    return [] if group == os.getpgrp() else found


def stop_orphans(pid_file: str) -> None:
    """The last master's pid is its workers' process group (Supervisord gives each
    program its own); a clean exit removes the file. The entrypoint emptied the
    run directory at start, so the file is this run's."""
    try:
        with open(pid_file) as file:
            group = int(file.read())
    except (OSError, ValueError):
        return
    if not orphans(group):
        return
    say(f"the workers of crashed master {group} still run; stopping them", "warning")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGQUIT)
    deadline = time.monotonic() + ORPHANS_GRACE_SECONDS
    while orphans(group) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if orphans(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def main(command: list[str]) -> None:
    run = RunDir.from_env()
    wait_for_gunicorn(run.gunicorn_socket)
    stop_orphans(run.nginx_pid)
    # A master killed with -9 leaves its status socket: the next could not bind it.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(run.nginx_status)
    os.execvp(command[0], command)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m stack.start_nginx nginx [ARG...]")
    main(sys.argv[1:])
