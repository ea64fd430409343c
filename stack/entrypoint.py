"""The container's entrypoint: validate settings, render Nginx's config, run Supervisord.

Supervisord runs in this very process (PID 1 in the container), so there is no
extra process to forward signals, with stack/watchdog.py's fail-fast and drain in
its loop. When the watchdog stopped it because a program could not stay up, this
exits 1 instead of Supervisord's 0.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import sys
from pathlib import Path

from supervisor import poller, supervisord

from stack import app_commands, nginx_config, rundir
from stack.accesslog import AccessLog
from stack.app_commands import log
from stack.rundir import RunDir
from stack.settings import SettingError, load
from stack.watchdog import Watchdog

STACK_ROOT = Path(__file__).resolve().parent.parent
EX_CONFIG = 78  # sysexits.h: configuration error


def make_run_dir() -> RunDir:
    """Private directory for sockets, pid and temp files, under the writable temp dir."""
    run = RunDir.under(os.environ.get("TMPDIR", "/tmp"))
    path = Path(run.root)
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    Path(run.draining).unlink(missing_ok=True)
    Path(run.failed).unlink(missing_ok=True)
    return run


def raise_open_files_limit() -> None:
    """Soft open-files limit up to the hard one: each proxied client holds two
    descriptors, and a soft 1024 would cap Nginx near 500 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    # A seccomp profile or runtime may forbid it: then the soft limit stays.
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


class _PromptPoller(poller.Poller):  # type: ignore[misc,valid-type]
    """Supervisord acts only between polls of up to 1 s: it spawns its programs after
    the first one, and restarts a crashed program or starts stopping on SIGTERM after
    the poll that follows the signal. This poller returns at once for the first poll
    and, woken by any signal (signal.set_wakeup_fd), for the one after. It also
    flushes the access log's pipe on time (stack/accesslog.py)."""

    access_log: AccessLog | None = None

    def initialize(self) -> None:
        super().initialize()
        self._wakeup, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.register_readable(self._wakeup)
        self._at_once = True

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        if self._at_once:
            self._at_once, timeout = False, 0
        if self.access_log:
            timeout = self.access_log.timeout(timeout)
        readables, writables = super().poll(timeout)
        if self.access_log:
            self.access_log.flush_if_due()
        if self._wakeup in readables:  # not Supervisord's: it would unregister it
            readables.remove(self._wakeup)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup, 4096)
            self._at_once = True
        return readables, writables


def main(command: list[str]) -> int:
    """Serve, or run `command` instead (`docker run IMAGE COMMAND ARGS...`)."""
    raise_open_files_limit()  # first: the settings read the limit in force
    try:
        settings = load()
    except SettingError as error:
        log(str(error))
        return EX_CONFIG
    if command:
        return app_commands.run(settings, command)
    run = make_run_dir()
    access_log = AccessLog() if settings.access_log else None
    nginx_config.render(settings, run, access_log.path if access_log else "off")
    if not nginx_config.test(run):
        log("Nginx refused its configuration (nginx/conf.d/ included): see its message above")
        return EX_CONFIG
    code = app_commands.prestart(settings)
    if code:
        return code
    threads = f" x {settings.threads} threads" if settings.worker_class == "gthread" else ""
    log(
        f"serving {settings.app_module} on port {settings.port}: "
        f"{settings.web_concurrency} {settings.worker_class} workers{threads} "
        f"({settings.cpus} CPUs available)"
    )
    # Read by supervisord.conf's %(ENV_...)s expansions.
    os.environ.update({
        "STACK_ROOT": str(STACK_ROOT),
        rundir.ENV: run.root,
        "STACK_NGINX_CONF": run.nginx_conf,
        "STACK_SUPERVISORD_PID": run.supervisord_pid,
        "STACK_PYTHON": sys.executable,
        "STACK_STOP_WAIT": str(settings.stop_wait),
    })
    poller.Poller = _PromptPoller
    _PromptPoller.access_log = access_log
    supervisord.Supervisor = functools.partial(Watchdog, run=run,
                                               drain_seconds=settings.drain_seconds)
    supervisord.main(
        ["--configuration", str(STACK_ROOT / "supervisord.conf"),
         "--loglevel", settings.supervisor_log_level]
    )
    if access_log:  # Nginx has stopped: what it wrote last
        access_log.flush(final=True)
    failed = Path(run.failed)
    if failed.exists():
        log(f"stopped because {failed.read_text().strip()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
