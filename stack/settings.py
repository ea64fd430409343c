"""Every environment setting of the image: name, default, validation, and docs.

This module is the one source of truth. The entrypoint validates with it, the
Gunicorn and Nginx configurations are rendered from it, and a test checks the
README's configuration table against SETTINGS.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


class SettingError(ValueError):
    """A setting has a value the image cannot run with."""

    def __init__(self, name: str, value: str, accepted: str) -> None:
        super().__init__(f"invalid {name}={value!r}: expected {accepted}")
        self.name = name


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def _cgroup_cpu_quota(root: Path) -> float | None:
    """The CPU quota in CPUs, from cgroup v2 `cpu.max` or v1 CFS files; None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


# --- parsers: each takes the raw string and returns the typed value or raises ValueError


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
            raise ValueError
        return int(raw)

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError
        return raw.lower()

    return parse


def _switch(raw: str) -> bool:
    value = raw.lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ValueError


def _app_module(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(.*\))?", raw):
        raise ValueError
    return raw


def _size(raw: str) -> int:
    """An Nginx-style size (`1m`, `512k`, `1048576`), returned in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", raw)
    if not match:
        raise ValueError
    size = int(match[1]) * 1024 ** " kmg".index((match[2] or " ").lower())
    if not 1 <= size <= 1024**3:
        raise ValueError
    return size


def _networks(raw: str) -> tuple[str, ...]:
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    return tuple(str(ipaddress.ip_network(item, strict=False)) for item in items)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    parse: Callable[[str], Any]
    accepted: str
    doc: str
    # How the README shows a default that is derived at start rather than fixed.
    default_doc: str = ""


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

SETTINGS: tuple[Setting, ...] = (
    Setting("APP_MODULE", "app:app", _app_module, "module:callable, e.g. app:app",
            "The WSGI application Gunicorn serves."),
    Setting("APP_DIR", "/srv/app", str, "a directory path",
            "Directory of the app: Gunicorn imports from it; Nginx serves its `static/`."),
    Setting("PORT", "1300", _whole(1, 65535), "a port number from 1 to 65535",
            "Port Nginx listens on."),
    Setting("WEB_CONCURRENCY", "", _whole(1, 256), "a whole number from 1 to 256",
            "Gunicorn worker processes.",
            default_doc="one more than the CPUs the container may use (cgroup quota and "
                        "affinity), at least 2"),
    Setting("WORKER_CLASS", "gthread", _choice("gthread", "sync"), "gthread or sync",
            "Gunicorn worker class."),
    Setting("THREADS", "4", _whole(1, 64), "a whole number from 1 to 64",
            "Threads per worker (gthread)."),
    Setting("TIMEOUT", "30", _whole(1, 3600), "a whole number of seconds from 1 to 3600",
            "Longest a request may run in Gunicorn; Nginx waits 5 s longer, so Gunicorn "
            "gives up first."),
    Setting("GRACEFUL_TIMEOUT", "5", _whole(1, 3600), "a whole number of seconds from 1 to 3600",
            "On stop, how long in-flight requests get to finish."),
    Setting("MAX_REQUESTS", "10000", _whole(0, 10**9), "a whole number, 0 for never",
            "Requests a Gunicorn worker serves before it is replaced (plus up to 10% "
            "jitter, so workers are not replaced together): a slow leak stays bounded."),
    Setting("KEEPALIVE_TIMEOUT", "75", _whole(0, 3600), "a whole number of seconds from 0 to 3600",
            "Nginx client keep-alive; longer than a load balancer's usual 60 s idle timeout."),
    Setting("MAX_BODY_SIZE", "1m", _size, "a size from 1 to 1g, e.g. 512k, 10m",
            "Largest request body; larger ones get 413."),
    Setting("TRUSTED_PROXIES", "", _networks, "comma-separated IP addresses or CIDR networks",
            "Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed; from anyone "
            "else these headers are replaced.", default_doc="none"),
    Setting("LOG_LEVEL", "info", _choice(*LOG_LEVELS),
            ", ".join(LOG_LEVELS[:-1]) + " or " + LOG_LEVELS[-1],
            "Log level of Gunicorn, Nginx's error log and Supervisord."),
    Setting("ACCESS_LOG", "on", _switch, "on or off", "Nginx access log, one line per request."),
    Setting("DRAIN_SECONDS", "0", _whole(0, 3600), "a whole number of seconds from 0 to 3600",
            "On stop, `/healthz` answers 503 at once while other requests are served for "
            "this long; 0 turns draining off."),
)


@dataclass(frozen=True)
class Settings:
    app_module: str
    app_dir: str
    port: int
    web_concurrency: int
    worker_class: str
    threads: int
    timeout: int
    graceful_timeout: int
    keepalive_timeout: int
    max_body_size: int
    trusted_proxies: tuple[str, ...]
    log_level: str
    access_log: bool
    drain_seconds: int
    max_requests: int
    cpus: int

    @property
    def gunicorn_threads(self) -> int:
        """THREADS applies to gthread; Gunicorn would quietly turn a sync worker with
        threads into gthread."""
        return self.threads if self.worker_class == "gthread" else 1

    @property
    def nginx_workers(self) -> int:
        """Python, not Nginx, is the bottleneck: a second Nginx worker on 2 CPUs only
        takes CPU from Gunicorn's workers (README, Performance)."""
        return max(1, self.cpus // 8)

    # Derived timeouts, kept in order from the client down to the app.
    @property
    def proxy_timeout(self) -> int:
        """How long Nginx waits on Gunicorn: longer than Gunicorn's own timeout."""
        return self.timeout + 5

    upstream_keepalive = 30  # Nginx's idle connections to the socket...

    @property
    def gunicorn_keepalive(self) -> int:
        """...which Gunicorn keeps open longer, so Nginx never reuses one Gunicorn just closed."""
        return self.upstream_keepalive + 5


def load(environ: Mapping[str, str] = os.environ, cgroup_root: Path = CGROUP_ROOT) -> Settings:
    """Parse every setting from the environment; raise SettingError on the first bad one."""
    cpus = available_cpus(cgroup_root)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name, "").strip()
        if not raw:
            raw = setting.default
        if setting.name == "WEB_CONCURRENCY" and not raw:
            # One more than the CPUs: Nginx and a worker's I/O waits leave CPU
            # time that a third process uses (+13 to +32 % req/s on 2 CPUs).
            values["web_concurrency"] = max(2, cpus + 1)
            continue
        try:
            values[setting.name.lower()] = setting.parse(raw)
        except ValueError:
            raise SettingError(setting.name, raw, setting.accepted) from None
    return Settings(**values, cpus=cpus)


def markdown_table() -> str:
    """The README's configuration table; `python -m stack.settings` prints it."""
    rows = ["| Variable | Default | Accepted values | What it does |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default_doc or f"`{setting.default}`"
        rows.append(f"| `{setting.name}` | {default} | {setting.accepted} | {setting.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
