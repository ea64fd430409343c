"""Start Nginx for Supervisord: `python -m stack.start_nginx nginx ARG...`.

- Only once Gunicorn's socket accepts, so Nginx opens port 1300 when Gunicorn is
  ready behind it, and early requests never meet a 502.
- Only once the workers of a crashed Nginx master are gone: killed with -9, a
  master leaves its workers holding port 1300, and the new master could not
  bind it. They get SIGQUIT (finish in-flight requests, then exit) first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time

from stack.rundir import RunDir

POLL_SECONDS = 0.05
REPORT_EVERY_SECONDS = 10
ORPHANS_GRACE_SECONDS = 10  # then SIGKILL; Nginx's own worker_shutdown_timeout is shorter


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
            print(f"start_nginx: {path} not accepting after {waited:.0f} s", file=sys.stderr)
        time.sleep(POLL_SECONDS)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def stop_orphans(pid_file: str) -> None:
    """The last master's pid is its workers' process group (Supervisord gives each
    program its own); a clean exit removes the file."""
    try:
        with open(pid_file) as file:
            group = int(file.read())
    except (OSError, ValueError):
        return
    if not group_alive(group):
        return
    print(f"start_nginx: the workers of crashed master {group} still run; stopping them",
          file=sys.stderr)
    os.killpg(group, signal.SIGQUIT)
    deadline = time.monotonic() + ORPHANS_GRACE_SECONDS
    while group_alive(group) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def main(command: list[str]) -> None:
    run = RunDir.from_env()
    wait_for_gunicorn(run.gunicorn_socket)
    stop_orphans(run.nginx_pid)
    os.execvp(command[0], command)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m stack.start_nginx nginx [ARG...]")
    main(sys.argv[1:])
