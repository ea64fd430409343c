"""Nginx's configuration: rendered from the settings into the run directory, then
tested with `nginx -t` before anything starts, so a bad snippet in nginx/conf.d/
stops the container with Nginx's own message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stack import start
from stack.protocol import HEALTH_PATH
from stack.rundir import RunDir
from stack.settings import Settings

NGINX_DIR = Path(__file__).resolve().parent.parent / "nginx"
CONF_D = NGINX_DIR / "conf.d"  # the user's *.conf files, included in the server block


def values(settings: Settings, run: RunDir, access_log_path: str,
           proxy_token: str) -> dict[str, object]:
    """What the template is rendered from."""
    return {
        "settings": settings,
        "run": run,
        "nginx_dir": NGINX_DIR,
        "conf_d": CONF_D,
        "proxy_token": proxy_token,
        "health_path": HEALTH_PATH,
        "access_log_path": access_log_path,
        "ipv6": Path("/proc/net/if_inet6").exists(),
    }


def render(settings: Settings, run: RunDir, access_log_path: str, proxy_token: str) -> None:
    if start.in_child(_render, "nginx.conf.j2",
                      values(settings, run, access_log_path, proxy_token), Path(run.nginx_conf)):
        raise RuntimeError(f"rendering {run.nginx_conf} failed")


def test(run: RunDir, output: Callable[[bytes], None]) -> bool:
    """`nginx -t`: its message, if any, goes to `output`."""
    return start.run(
        ["nginx", "-t", "-q", "-e", "stderr", "-p", run.root, "-c", run.nginx_conf], output,
    ) == 0


def version() -> str:
    """Nginx's version, as `nginx -v` tells it (1.26.3)."""
    said: list[bytes] = []
    start.run(["nginx", "-v"], said.append)
    text = b"".join(said).decode(errors="replace")
    return text.rsplit("nginx/", 1)[1].split()[0] if "nginx/" in text else "unknown"


def _render(template: str, values: dict[str, object], target: Path) -> None:
    import jinja2  # here only: see in_child

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(NGINX_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    target.write_text(env.get_template(template).render(values))
