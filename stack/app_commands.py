"""The app's own code outside Gunicorn: `APP_DIR/prestart.py` before the server
starts, and `docker run IMAGE COMMAND ARGS...` instead of it.

Both run as the container's user, under its hardening, in APP_DIR with the app
importable and the venv's commands on PATH: `flask --app pkg init-db` and
`python -m pkg.tool` work as they would in the project's directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from stack import start
from stack.logformat import stack_line
from stack.settings import Settings

PRESTART = "prestart.py"
EX_NOTFOUND, EX_NOEXEC = 127, 126  # what a shell answers for a missing or unrunnable command


def log(message: str) -> None:
    """A line of the entrypoint's before there is more to say it with."""
    stack_line("stack", message, logger="entrypoint")


def app_environ(settings: Settings) -> dict[str, str]:
    """This environment with APP_DIR first on the import path."""
    path = [settings.app_dir, *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    return {**os.environ, "PYTHONPATH": ":".join(path)}


def prestart(settings: Settings, log: Callable[[str], None],
             output: Callable[[bytes], None]) -> int:
    """Run APP_DIR/prestart.py if there is one, its output to `output`; its exit
    code, 0 when it succeeded."""
    script = Path(settings.app_dir, PRESTART)
    if not script.is_file():
        return 0
    log(f"running {script}")
    code = start.run([sys.executable, str(script)], output, cwd=settings.app_dir,
                     env=app_environ(settings))
    if code:
        log(f"{script} failed with exit code {code}: not starting the server")
        return code if 0 < code < 256 else 1  # killed by a signal: still a failure
    return 0


def run(settings: Settings, command: list[str]) -> int:
    """Replace this process with `command`; an exit code only if it cannot start."""
    os.chdir(settings.app_dir)
    try:
        os.execvpe(command[0], command, app_environ(settings))
    except FileNotFoundError:
        log(f"{command[0]}: command not found")
        return EX_NOTFOUND
    except OSError as error:
        log(f"{command[0]}: {error.strerror}")
        return EX_NOEXEC
