"""The container's entrypoint: validate settings, render Nginx's config, run Supervisord.

Supervisord runs in this very process (PID 1 in the container), so there is no
extra process to forward signals. When stack/watchdog.py stopped it because a
program could not stay up, this exits 1 instead of Supervisord's 0.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from supervisor import poller, supervisord

from stack.settings import SettingError, Settings, load

STACK_ROOT = Path(__file__).resolve().parent.parent
EX_CONFIG = 78  # sysexits.h: configuration error

# Nginx's error log speaks of trouble only: its "notice" lines are start-up chatter.
NGINX_LOG_LEVELS = {"debug": "info", "info": "warn", "warning": "warn",
                    "error": "error", "critical": "crit"}
SUPERVISOR_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn",
                         "error": "error", "critical": "critical"}


def log(message: str) -> None:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def run_dir() -> Path:
    """Private directory for sockets, pid and temp files, under the writable temp dir."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "stack"
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    (path / "draining").unlink(missing_ok=True)
    (path / "failed").unlink(missing_ok=True)
    return path


def access_log_path() -> str:
    """Nginx writes its access log straight to our stdout, not through Supervisord."""
    path = f"/proc/{os.getpid()}/fd/1"
    try:
        with open(path, "a"):
            return path
    except OSError:  # stdout is a socket, say: go through Supervisord's pipe instead
        return "/dev/stdout"


def raise_open_files_limit() -> int:
    """Soft open-files limit up to the hard one: each proxied client holds two
    descriptors, and a soft 1024 would cap Nginx near 500 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    except (OSError, ValueError):  # a seccomp profile or runtime may forbid it
        return soft
    return max(soft, wanted)


class _PromptPoller(poller.Poller):  # type: ignore[misc,valid-type]
    """Supervisord acts only between polls of up to 1 s: it spawns its programs after
    the first one, and restarts a crashed program or starts stopping on SIGTERM after
    the poll that follows the signal. This poller returns at once for the first poll
    and, woken by any signal (signal.set_wakeup_fd), for the one after."""

    def initialize(self) -> None:
        super().initialize()
        self._wakeup, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self.register_readable(self._wakeup)
        self._at_once = True

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        if self._at_once:
            self._at_once, timeout = False, 0
        readables, writables = super().poll(timeout)
        if self._wakeup in readables:  # not Supervisord's: it would unregister it
            readables.remove(self._wakeup)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup, 4096)
            self._at_once = True
        return readables, writables


def render_nginx(settings: Settings, directory: Path, open_files: int) -> Path:
    values = {
        "settings": settings,
        "run_dir": directory,
        "static_dir": Path(settings.app_dir, "static"),
        "error_log_level": NGINX_LOG_LEVELS[settings.log_level],
        "access_log_path": access_log_path(),
        "ipv6": Path("/proc/net/if_inet6").exists(),
        # A client and its upstream connection each count; leave room for files.
        "worker_connections": min(4096, open_files // 2),
    }
    target = directory / "nginx.conf"
    in_child(render, "nginx.conf.j2", values, target)
    return target


def render(template: str, values: dict[str, object], target: Path) -> None:
    import jinja2  # here only: see in_child

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(STACK_ROOT / "nginx"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    target.write_text(env.get_template(template).render(values))


def in_child(function: Callable[..., None], *args: object) -> None:
    """Run `function` in a forked child and wait for it: what it imports (Jinja2,
    3 MB) never weighs on this process, which lives on as Supervisord."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            function(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{function.__name__}{args[:1]} failed")


def main() -> int:
    try:
        settings = load()
    except SettingError as error:
        log(str(error))
        return EX_CONFIG
    directory = run_dir()
    open_files = raise_open_files_limit()
    render_nginx(settings, directory, open_files)
    threads = f" x {settings.threads} threads" if settings.worker_class == "gthread" else ""
    log(
        f"serving {settings.app_module} on port {settings.port}: "
        f"{settings.web_concurrency} {settings.worker_class} workers{threads} "
        f"({settings.cpus} CPUs available)"
    )
    # Read by supervisord.conf's %(ENV_...)s expansions.
    os.environ.update(
        STACK_ROOT=str(STACK_ROOT),
        STACK_RUN_DIR=str(directory),
        STACK_PYTHON=sys.executable,
        STACK_STOP_WAIT=str(settings.graceful_timeout + 2),
        STACK_DRAIN_SECONDS=str(settings.drain_seconds),
        STACK_DRAIN_WAIT=str(settings.drain_seconds + 2),
    )
    poller.Poller = _PromptPoller
    supervisord.main(
        ["--configuration", str(STACK_ROOT / "supervisord.conf"),
         "--loglevel", SUPERVISOR_LOG_LEVELS[settings.log_level]]
    )
    failed = directory / "failed"
    if failed.exists():
        log(f"stopped because {failed.read_text().strip()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
