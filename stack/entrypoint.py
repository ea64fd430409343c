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
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import poller, supervisord

from stack import app_commands, gunicorn_args, nginx_config, rundir, start
from stack.accesslog import PIPE_SIZE, AccessLog
from stack.app_commands import log
from stack.logs import Output, Router
from stack.rundir import RunDir
from stack.scoreboard import Scoreboard
from stack.settings import SettingError, Settings, load
from stack.watchdog import Watchdog

if TYPE_CHECKING:
    from stack.metrics import Metrics

STACK_ROOT = Path(__file__).resolve().parent.parent
EX_CONFIG = 78  # sysexits.h: configuration error
EX_CANTCREAT = 73  # sysexits.h: cannot create a (user) output file
EX_UNAVAILABLE = 69  # sysexits.h: a service is unavailable (the metrics' port)
START_FLUSH_SECONDS = 1.0  # the longest a line of the start waits for a stalled stdout
VERSION_ENV = "FLASK_STACK_VERSION"  # the image's version (the Dockerfile's ARG VERSION)


def check_gunicorn_args() -> int:
    """0, or EX_CONFIG with one line, for GUNICORN_CMD_ARGS (in a child: it imports Gunicorn)."""
    problem = gunicorn_args.problem(os.environ.get("GUNICORN_CMD_ARGS", ""))
    if problem:
        log(problem)
        return EX_CONFIG
    return 0


def make_run_dir() -> RunDir:
    """Private directory for sockets, pid and temp files, under the writable temp dir.
    Emptied first: a restarted container keeps its file system (a /tmp volume
    too), and nothing a previous run left there may be trusted, its pid files least."""
    run = RunDir.of_tmpdir()
    path = Path(run.root)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # whatever the umask
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
    gives the log router its ticks on time (stack/logs.py)."""

    router: Router | None = None

    def initialize(self) -> None:
        super().initialize()
        self._wakeup, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.register_readable(self._wakeup)
        self._at_once = True

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        if self._at_once:
            self._at_once, timeout = False, 0
        router = self.router
        output = router.output if router else None
        # What waits for stdout goes out as soon as its reader takes more, not a
        # pipe's worth per tick: that would cap the log at 64 KiB / FLUSH_SECONDS.
        waiting = output is not None and output.waiting()
        if waiting:
            self.register_writable(output.fd)
        # Nginx waits while the access log's pipe is full: read it as lines
        # come when it could fill before the next tick.
        access = router.access_log if router and router.urgent else None
        if access is not None:
            self.register_readable(access.fd)
        if router:
            timeout = router.timeout(timeout)
        readables, writables = super().poll(timeout)
        if waiting:
            self.unregister_writable(output.fd)
            if output.fd in writables:
                writables.remove(output.fd)
            output.flush()  # also when poll saw an error on it: a gone reader (EPIPE)
        if access is not None:
            self.unregister_readable(access.fd)
            if access.fd in readables:
                readables.remove(access.fd)
                router.take_access_log()
        if router:
            router.tick()
        if self._wakeup in readables:  # not Supervisord's: it would unregister it
            readables.remove(self._wakeup)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup, 4096)
            self._at_once = True
        return readables, writables


def main(command: list[str]) -> int:
    """Serve, or run `command` instead (`docker run IMAGE COMMAND ARGS...`)."""
    start.interruptible()
    try:
        return serve(command)
    except start.Interrupted as stop:
        log(f"stopped by {stop} during the start")
        return stop.exit_code


def serve(command: list[str]) -> int:
    raise_open_files_limit()  # first: the settings read the limit in force
    try:
        settings = load()
    except SettingError as error:
        log(str(error))
        return EX_CONFIG
    if command:
        return app_commands.run(settings, command)
    if start.in_child(check_gunicorn_args):
        return EX_CONFIG
    try:
        run = make_run_dir()
    except OSError as error:
        log(f"cannot make the run directory: {error}")
        return EX_CANTCREAT
    # The metrics count every access log line: the pipe is there for either.
    access_log = AccessLog() if settings.access_log or settings.metrics else None
    router = Router(Output(text=settings.log_format == "text"), settings.log_format == "text",
                    access_log, print_access=settings.access_log)

    def say(message: str, level: str = "info") -> None:
        """The start's own lines, written out at once."""
        router.stack(message, level, logger="entrypoint")
        router.output.flush(START_FLUSH_SECONDS)

    def output_of(program: str) -> Callable[[bytes], None]:
        def take(data: bytes) -> None:
            router.program_output(program, "stderr", data)
            router.output.flush(START_FLUSH_SECONDS)
        return take

    proxy_token = secrets.token_urlsafe(24)  # new each run
    nginx_config.render(settings, run, access_log.path if access_log else "off", proxy_token)
    if not nginx_config.test(run, output_of("nginx")):
        say("Nginx refused its configuration (nginx/conf.d/ included): see its message above",
            "error")
        return EX_CONFIG
    code = app_commands.prestart(settings, say, output_of("prestart"))
    router.close_program("prestart")
    if code:
        router.close()
        return code
    scoreboard = Scoreboard(run.scoreboard, create=True)
    metrics = None
    if settings.metrics:
        metrics = start_metrics(settings, run, scoreboard, router)
        if metrics is None:
            router.close()
            return EX_UNAVAILABLE
        router.on_access = metrics.observe_line
    if access_log and access_log.size < PIPE_SIZE:
        say(f"the access log's pipe is {access_log.size >> 10} KiB, not {PIPE_SIZE >> 10}: "
            "this UID's pipes hold their share of the kernel's memory "
            "(fs.pipe-user-pages-soft; many containers of one UID on a host); "
            "it is read as lines come", "warning")
    threads = f" x {settings.threads} threads" if settings.worker_class == "gthread" else ""
    say(f"serving {settings.app_module} on port {settings.port}: "
        f"{settings.gunicorn_workers} {settings.worker_class} workers{threads} "
        f"({settings.cpus} CPUs available)"
        + (f"; metrics on port {settings.metrics_port}" if metrics else "")
        + ("; development mode: edits served as they are saved" if settings.dev else ""))
    # Read by supervisord.conf's %(ENV_...)s expansions.
    os.environ.update({
        "STACK_ROOT": str(STACK_ROOT),
        rundir.ENV: run.root,
        rundir.PROXY_TOKEN_ENV: proxy_token,
        "STACK_NGINX_CONF": run.nginx_conf,
        "STACK_SUPERVISORD_PID": run.supervisord_pid,
        "STACK_PYTHON": sys.executable,
        "STACK_NGINX_STOP_WAIT": str(settings.nginx_stop_wait),
        "STACK_GUNICORN_STOP_WAIT": str(settings.gunicorn_stop_wait),
    })
    start.quiet()  # from here a stop signal waits for Supervisord's handlers
    poller.Poller = _PromptPoller
    _PromptPoller.router = router
    supervisord.Supervisor = functools.partial(
        Watchdog, run=run, drain_seconds=settings.drain_seconds, router=router,
        metrics=metrics)
    supervisord.main(
        ["--configuration", str(STACK_ROOT / "supervisord.conf"),
         "--loglevel", settings.supervisor_log_level]
    )
    failed = Path(run.failed)
    if failed.exists():
        router.stack(f"stopped because {failed.read_text().strip()}", "error",
                     logger="entrypoint")
    router.close()  # Nginx has stopped: what it wrote last, and the rest
    return 1 if failed.exists() else 0


def start_metrics(settings: Settings, run: RunDir, scoreboard: Scoreboard,
                  router: Router) -> Metrics | None:
    """The metrics' endpoint, listening; None (and a line why) if it cannot listen."""
    from stack.metrics import Metrics, versions  # here only: none of it when METRICS=off

    metrics = Metrics(scoreboard, run.nginx_status, settings.gunicorn_threads,
                      versions(os.environ.get(VERSION_ENV, "unknown"), nginx_config.version()),
                      lambda: router.output.dropped)
    try:
        metrics.serve(settings.metrics_port)
    except OSError as error:
        router.stack(f"cannot serve the metrics on METRICS_PORT={settings.metrics_port}: "
                     f"{error}", "error", logger="entrypoint")
        router.output.flush(START_FLUSH_SECONDS)
        return None
    return metrics


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
