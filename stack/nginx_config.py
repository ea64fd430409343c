"""Nginx's configuration: rendered from the settings into the run directory, then
tested with `nginx -t` before anything starts, so a bad snippet in nginx/conf.d/
stops the container with Nginx's own message."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from stack.rundir import RunDir
from stack.settings import Settings

NGINX_DIR = Path(__file__).resolve().parent.parent / "nginx"
CONF_D = NGINX_DIR / "conf.d"  # the user's *.conf files, included in the server block


def render(settings: Settings, run: RunDir, access_log_path: str) -> None:
    values = {
        "settings": settings,
        "run": run,
        "conf_d": CONF_D,
        "access_log_path": access_log_path,
        "ipv6": Path("/proc/net/if_inet6").exists(),
    }
    in_child(_render, "nginx.conf.j2", values, Path(run.nginx_conf))


def test(run: RunDir) -> bool:
    """`nginx -t`: its message, if any, goes to our stderr."""
    return subprocess.run(
        ["nginx", "-t", "-q", "-e", "stderr", "-p", run.root, "-c", run.nginx_conf],
        stdout=sys.stderr,
    ).returncode == 0


def _render(template: str, values: dict[str, object], target: Path) -> None:
    import jinja2  # here only: see in_child

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(NGINX_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    target.write_text(env.get_template(template).render(values))


def in_child(function: Callable[..., None], *args: object) -> None:
    """Run `function` in a forked child and wait for it: what it imports (Jinja2,
    3 MB) never weighs on the entrypoint, which lives on as Supervisord."""
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
