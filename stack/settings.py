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
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stack.rundir import RunDir

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


def _url_path(raw: str) -> str:
    """A URL prefix such as /static or /assets/v2, kept without its trailing slash."""
    segments = raw.strip("/").split("/")
    if not raw.startswith("/") or any(
        not re.fullmatch(r"[A-Za-z0-9._~-]+", part) or part in (".", "..") for part in segments
    ):
        raise ValueError
    return "/" + "/".join(segments)


# Characters a path may hold: none that ends or opens an Nginx directive or
# token (`;`, braces, quotes, `$`, `#`, whitespace, control characters).
_PATH_CHARACTERS = re.compile(r"[A-Za-z0-9._~@%+=:,/-]+")


def _prefix(raw: str) -> str:
    """ROOT_PATH: a URL path such as /shop, or nothing."""
    return _url_path(raw) if raw else ""


def _absolute_path(raw: str) -> str:
    if (not raw.startswith("/") or not _PATH_CHARACTERS.fullmatch(raw)
            or {".", ".."} & set(raw.split("/"))):
        raise ValueError
    return raw.rstrip("/") or "/"


# What a static directory may never be, nor lie under: the system's files, the
# kernel's, and the stack's own (its code, its venv, its run directory's parent).
SYSTEM_DIRECTORIES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/opt",
                      "/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var",
                      "/srv/stack", "/srv/nginx")


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _static_path(raw: str) -> str:
    """A directory to serve files from: absolute, and neither / nor a system
    directory, nor under one (load() keeps it out of the temp directory too)."""
    path = _absolute_path(raw)
    if path in ("/", "/srv") or any(_within(path, top) for top in SYSTEM_DIRECTORIES):
        raise ValueError
    return path


def _switch_or_off(raw: str) -> bool:
    """A switch's value where a bad one is DEV's own error to report, later."""
    try:
        return _switch(raw.strip() or "off")
    except ValueError:
        return False


def _networks(raw: str) -> tuple[str, ...]:
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    return tuple(str(ipaddress.ip_network(item, strict=False)) for item in items)


@dataclass(frozen=True)
class Setting:
    """How one environment variable is read and documented; its name is its field's, upper-cased."""

    default: str
    parse: Callable[[str], Any]
    accepted: str
    doc: str
    # How the README shows a default that is derived at start rather than fixed.
    default_doc: str = ""
    name: str = ""  # filled in from the field


def setting(default: str, parse: Callable[[str], Any], accepted: str, doc: str,
            default_doc: str = "") -> Any:
    """A Settings field read from the environment variable of the same name."""
    return field(metadata={"setting": Setting(default, parse, accepted, doc, default_doc)})


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Nginx's error log speaks of trouble only: its "notice" lines are start-up chatter.
NGINX_LOG_LEVELS = {"debug": "info", "info": "warn", "warning": "warn",
                    "error": "error", "critical": "crit"}
SUPERVISOR_LOG_LEVELS = {"debug": "debug", "info": "info", "warning": "warn",
                         "error": "error", "critical": "critical"}


@dataclass(frozen=True)
class Settings:
    """Every setting (one field each, in the README's order), then what the machine decides."""

    app_module: str = setting(
        "app:app", _app_module, "module:callable, e.g. app:app",
        "The WSGI application Gunicorn serves.")
    app_dir: str = setting(
        "/srv/app", _absolute_path, "an absolute directory path",
        "Directory of the app: Gunicorn imports from it and runs in it; commands and "
        "`prestart.py` run in it too.")
    port: int = setting(
        "1300", _whole(1, 65535), "a port number from 1 to 65535", "Port Nginx listens on.")
    web_concurrency: int = setting(
        "", _whole(1, 256), "a whole number from 1 to 256", "Gunicorn worker processes.",
        default_doc="one more than the CPUs the container may use (cgroup quota and "
                    "affinity), at least 2")
    worker_class: str = setting(
        "gthread", _choice("gthread", "sync"), "gthread or sync", "Gunicorn worker class.")
    threads: int = setting(
        "8", _whole(1, 64), "a whole number from 1 to 64", "Threads per worker (gthread).")
    timeout: int = setting(
        "30", _whole(1, 3600), "a whole number of seconds from 1 to 3600",
        "Longest a request may run, for either worker class: its client then gets a "
        "JSON 504 and the worker holding it is replaced; Nginx waits 5 s longer, so the "
        "worker gives up first.")
    graceful_timeout: int = setting(
        "5", _whole(1, 3600), "a whole number of seconds from 1 to 3600",
        "On stop, how long in-flight requests get to finish (once: Nginx's graceful "
        "stop, then Gunicorn's quick one); a replaced worker's, too.")
    max_requests: int = setting(
        "10000", _whole(0, 10**9), "a whole number, 0 for never",
        "Requests a Gunicorn worker serves before it is replaced (plus up to 10% "
        "jitter, so workers are not replaced together): a slow leak stays bounded.")
    keepalive_timeout: int = setting(
        "75", _whole(0, 3600), "a whole number of seconds from 0 to 3600",
        "Nginx client keep-alive; longer than a load balancer's usual 60 s idle timeout.")
    root_path: str = setting(
        "", _prefix, "a URL path such as /shop, or empty",
        "The path the app is mounted under behind a shared balancer: `/shop/...` reaches "
        "the app with `SCRIPT_NAME=/shop`, so `url_for` builds `/shop/...` links, and "
        "static files are served under it; `/healthz` stays at the root.",
        default_doc="none")
    static_url: str = setting(
        "/static", _url_path, "a URL path such as /static or /assets",
        "URL prefix Nginx serves files under; a file it does not have goes on to the app "
        "(a package's or blueprint's static folder).")
    static_path: str = setting(
        "", _static_path, "an absolute directory path, not / or a system directory "
        "(/etc, /proc, /usr, ...) or under one",
        "Directory Nginx serves `STATIC_URL` from (no symlinks, nothing outside it).",
        default_doc="`APP_DIR`/static")
    max_body_size: int = setting(
        "1m", _size, "a size from 1 to 1g, e.g. 512k, 10m",
        "Largest request body; larger ones get 413.")
    trusted_proxies: tuple[str, ...] = setting(
        "", _networks, "comma-separated IP addresses or CIDR networks",
        "Peers whose `X-Forwarded-For`/`X-Forwarded-Proto`/`X-Forwarded-Prefix` are "
        "believed; from anyone else these headers are replaced.", default_doc="none")
    log_level: str = setting(
        "info", _choice(*LOG_LEVELS), ", ".join(LOG_LEVELS[:-1]) + " or " + LOG_LEVELS[-1],
        "Log level of Gunicorn, Nginx's error log and Supervisord.")
    log_format: str = setting(
        "json", _choice("json", "text"), "json or text",
        "Every line on stdout as one JSON object (`time`, `level`, `source`, `message`, "
        "the request's `request_id`...), or as text for a person at a terminal.",
        default_doc="`json` (`text` with `DEV`)")
    compression: bool = setting(
        "on", _switch, "on or off",
        "Nginx compresses text responses (HTML, CSS, JS, JSON, SVG, XML, plain text) "
        "over 1 KiB for clients that accept gzip, and serves a `FILE.gz` beside a static "
        "file when there is one.")
    access_log: bool = setting(
        "on", _switch, "on or off", "Nginx access log, one line per request.")
    websocket_timeout: int = setting(
        "3600", _whole(1, 86400), "a whole number of seconds from 1 to 86400",
        "Nginx closes a WebSocket that has been idle this long.")
    drain_seconds: int = setting(
        "0", _whole(0, 3600), "a whole number of seconds from 0 to 3600",
        "On stop, `/healthz` answers 503 at once while other requests are served for "
        "this long; 0 turns draining off.")
    metrics: bool = setting(
        "on", _switch, "on or off",
        "Prometheus metrics of every request, Gunicorn and Nginx on `METRICS_PORT`; off "
        "closes the port.")
    metrics_port: int = setting(
        "9464", _whole(1, 65535), "a port number from 1 to 65535, not `PORT`",
        "Port of the metrics endpoint, `GET /metrics` (never through `PORT`).")
    dev: bool = setting(
        "off", _switch, "on or off",
        "Development mode: with the app's directory mounted over `APP_DIR`, an edited "
        "Python file or template is served on the next request (Gunicorn `--reload`, one "
        "worker); logs are text. Nginx, static files and the health check stay as in "
        "production. Never the Werkzeug debugger.")
    # Not settings: read from the machine at start.
    cpus: int = 1
    open_files: int = 1024

    @staticmethod
    def default(name: str) -> str:
        """A setting's default as the README gives it (its variable's name)."""
        (item,) = [item for item in SETTINGS if item.name == name]
        return item.default

    # --- Gunicorn

    @property
    def gunicorn_workers(self) -> int:
        """One in development: a single worker to start again on each edit."""
        return 1 if self.dev else self.web_concurrency

    @property
    def gunicorn_threads(self) -> int:
        """THREADS applies to gthread; Gunicorn would quietly turn a sync worker with
        threads into gthread."""
        return self.threads if self.worker_class == "gthread" else 1

    @property
    def max_requests_jitter(self) -> int:
        return self.max_requests // 10

    # --- Nginx

    @property
    def nginx_workers(self) -> int:
        """Python, not Nginx, is the bottleneck: a second Nginx worker on 2 CPUs only
        takes CPU from Gunicorn's workers (README, Performance)."""
        return max(1, self.cpus // 8)

    @property
    def worker_connections(self) -> int:
        """A client and its upstream connection each count; leave room for files."""
        return min(4096, self.open_files // 2)

    gzip_level = 5  # most of level 9's saving on JSON and HTML for a fraction of its CPU
    gzip_min_length = 1024  # below about a packet, compressing saves nothing on the wire

    upstream_pool = 32  # idle keep-alive connections each Nginx worker keeps to the socket

    @property
    def nginx_log_level(self) -> str:
        return NGINX_LOG_LEVELS[self.log_level]

    @property
    def supervisor_log_level(self) -> str:
        return SUPERVISOR_LOG_LEVELS[self.log_level]

    # --- Timeouts, kept in order from the client down to the app

    client_timeout = 15  # a client's header, its body, and its reading of the answer

    @property
    def proxy_timeout(self) -> int:
        """How long Nginx waits on Gunicorn: longer than Gunicorn's own timeout."""
        return self.timeout + 5

    upstream_keepalive = 30  # Nginx's idle connections to the socket...

    @property
    def gunicorn_keepalive(self) -> int:
        """...which Gunicorn keeps open longer, so Nginx never reuses one Gunicorn just closed."""
        return self.upstream_keepalive + 5

    # --- Stopping: the drain (stack/watchdog.py), then Supervisord stops Nginx, then
    # Gunicorn. In-flight requests get GRACEFUL_TIMEOUT once, in Nginx's graceful
    # stop; Gunicorn, stopped after it, has nothing left that a client waits for.

    nginx_stop_spare = 1  # Nginx has exited this soon after its worker_shutdown_timeout
    gunicorn_stop_wait = 2  # Gunicorn's quick stop (SIGQUIT): workers exit at once

    @property
    def nginx_stop_wait(self) -> int:
        """Supervisord's wait for Nginx to stop before it SIGKILLs it."""
        return self.graceful_timeout + self.nginx_stop_spare

    @property
    def stop_ceiling(self) -> int:
        """The longest a stop can take after SIGTERM: a deployment's grace must exceed it."""
        return self.drain_seconds + self.nginx_stop_wait + self.gunicorn_stop_wait


SETTINGS: tuple[Setting, ...] = tuple(
    replace(f.metadata["setting"], name=f.name.upper())
    for f in fields(Settings) if "setting" in f.metadata
)


def load(environ: Mapping[str, str] = os.environ, cgroup_root: Path = CGROUP_ROOT) -> Settings:
    """Parse every setting from the environment; raise SettingError on the first bad one."""
    cpus = available_cpus(cgroup_root)
    values: dict[str, Any] = {}
    for item in SETTINGS:
        raw = environ.get(item.name, "").strip() or item.default
        if item.name == "WEB_CONCURRENCY" and not raw:
            # One more than the CPUs: Nginx and a worker's I/O waits leave CPU
            # time that a third process uses (+13 to +32 % req/s on 2 CPUs).
            values["web_concurrency"] = max(2, cpus + 1)
            continue
        if item.name == "LOG_FORMAT" and not environ.get(item.name, "").strip():
            # DEV's default; read before it: its field comes last.
            raw = "text" if _switch_or_off(environ.get("DEV", "")) else item.default
        if item.name == "STATIC_PATH" and not raw:
            raw = os.path.join(values["app_dir"], "static")
        try:
            values[item.name.lower()] = item.parse(raw)
            if item.name == "METRICS_PORT" and values["metrics_port"] == values["port"]:
                raise ValueError
            if item.name == "STATIC_PATH":
                # Never the run directory's sockets and config, nor a folder holding them.
                run_dir = RunDir.of_tmpdir(environ).root
                static = values["static_path"]
                if _within(run_dir, static) or _within(static, run_dir):
                    raise ValueError
        except ValueError:
            raise SettingError(item.name, raw, item.accepted) from None
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files == resource.RLIM_INFINITY:
        open_files = 65536
    return Settings(**values, cpus=cpus, open_files=open_files)


def defaults() -> Settings:
    """What a container run with no settings uses (on this machine's CPUs)."""
    return load({})


def markdown_table() -> str:
    """The README's configuration table; `python -m stack.settings` prints it."""
    rows = ["| Variable | Default | Accepted values | What it does |", "|---|---|---|---|"]
    for item in SETTINGS:
        default = item.default_doc or f"`{item.default}`"
        rows.append(f"| `{item.name}` | {default} | {item.accepted} | {item.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
