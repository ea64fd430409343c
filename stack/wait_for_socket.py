"""Run a command once a UNIX socket accepts: `python -m stack.wait_for_socket SOCKET CMD...`.

Supervisord starts Nginx through this, so Nginx opens port 1300 only when
Gunicorn is ready behind it, and early requests never meet a 502.
"""

from __future__ import annotations

import os
import socket
import sys
import time

POLL_SECONDS = 0.05
REPORT_EVERY_SECONDS = 10


def accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def main(path: str, command: list[str]) -> None:
    started = last_report = time.monotonic()
    while not accepts(path):
        # No deadline: if Gunicorn cannot start, the watchdog stops the container.
        if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
            last_report = time.monotonic()
            waited = last_report - started
            print(f"wait_for_socket: {path} not accepting after {waited:.0f} s", file=sys.stderr)
        time.sleep(POLL_SECONDS)
    os.execvp(command[0], command)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m stack.wait_for_socket SOCKET COMMAND [ARG...]")
    main(sys.argv[1], sys.argv[2:])
