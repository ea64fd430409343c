"""Settings: parsing, CPU detection, and the README table kept equal to the code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.paths import ROOT
from harness.startup import Start, start
from stack.rundir import PROXY_TOKEN_ENV
from stack.settings import SETTINGS, SettingError, available_cpus, load, markdown_table

pytestmark = pytest.mark.app

AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "expected"), [
    ({}, AFFINITY),
    ({"cpu.max": "max 100000\n"}, AFFINITY),
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "150000 100000\n"}, min(AFFINITY, 2)),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, AFFINITY),
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "25000\n",
      "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 1),
])
def test_cpus_follow_cgroup_quota_and_affinity(tmp_path: Path, files: dict[str, str],
                                               expected: int) -> None:
    assert available_cpus(cgroup(tmp_path, files)) == expected


def test_every_default_is_a_value_its_own_parser_accepts() -> None:
    for item in SETTINGS:
        if item.default:
            item.parse(item.default)


@pytest.mark.parametrize(("quota", "workers"), [
    ("50000 100000", 2), ("100000 100000", 2), ("200000 100000", min(AFFINITY, 2) + 1)])
def test_workers_default_to_one_more_than_the_cpus_and_at_least_two(
        tmp_path: Path, quota: str, workers: int) -> None:
    assert load({}, cgroup(tmp_path, {"cpu.max": quota})).web_concurrency == workers


def test_static_path_defaults_to_the_apps_static_folder(tmp_path: Path) -> None:
    assert load({"APP_DIR": "/srv/shop"}, tmp_path).static_path == "/srv/shop/static"


# Gunicorn finds a request past TIMEOUT within a second of it: a gthread worker's
# loop, and the master's for a sync worker, come round at least once a second.
TIMEOUT_FOUND_SECONDS = 1


@pytest.mark.parametrize("timeout", ["1", "30", "3600"])
def test_the_worker_gives_up_first_and_nginx_closes_first(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, timeout: str) -> None:
    """As Nginx and Gunicorn get them: Nginx waits on a request longer than Gunicorn
    takes to end it, and closes an idle upstream connection before Gunicorn does,
    so it never reuses one that Gunicorn just closed."""
    started = start(monkeypatch, tmp_path, {"TIMEOUT": timeout})
    worker = started.gunicorn["timeout"]
    assert worker == int(timeout)
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        assert started.seconds(directive) > worker + TIMEOUT_FOUND_SECONDS, directive
    assert started.seconds("keepalive_timeout", upstream=True) < started.gunicorn["keepalive"]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"WEB_CONCURRENCY": " 3 "}, {"web_concurrency": 3}),
    ({"MAX_BODY_SIZE": "512k"}, {"max_body_size": 512 * 1024}),
    ({"MAX_BODY_SIZE": "2M"}, {"max_body_size": 2 * 1024 * 1024}),
    ({"TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16 ::1"},
     {"trusted_proxies": ("10.0.0.1/32", "192.168.0.0/16", "::1/128")}),
    ({"ACCESS_LOG": "OFF", "LOG_LEVEL": "Warning"}, {"access_log": False, "log_level": "warning"}),
    ({"APP_MODULE": "pkg.wsgi:create_app()"}, {"app_module": "pkg.wsgi:create_app()"}),
])
def test_values_parse(tmp_path: Path, environ: dict[str, str], expected: dict) -> None:
    settings = load(environ, tmp_path)
    assert {key: getattr(settings, key) for key in expected} == expected


@pytest.mark.parametrize(("name", "value"), [
    ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "1.5"), ("THREADS", "-2"),
    ("PORT", "70000"), ("TIMEOUT", "ten"), ("MAX_BODY_SIZE", "0"), ("MAX_BODY_SIZE", "2g"),
    ("TRUSTED_PROXIES", "example.com"), ("LOG_LEVEL", "loud"), ("WORKER_CLASS", "gevent"),
    ("APP_MODULE", "app:"), ("DRAIN_SECONDS", "5s"),
    # Nothing of the system's or the stack's own is ever served as static files...
    *[("STATIC_PATH", path) for path in (
        "/", "/proc", "/proc/self", "/sys", "/dev", "/etc", "/etc/nginx", "/usr", "/usr/share",
        "/opt", "/opt/stack", "/opt/venv", "/srv", "/srv/stack", "/srv/nginx", "/var/lib",
        "/root", "/tmp", "/tmp/stack", "/tmp/stack/proxy")],
    # ...nor a path that is relative, climbs, or could end or open a directive.
    *[("STATIC_PATH", path) for path in (
        "static", "./static", "/srv/app/../../etc", "/a/./b", "/a;b", "/a{b", "/a}b",
        "/a'b", '/a"b', "/a$b", "/a b", "/a\tb", "/a\nb", "/a#b", "/a\x00b")],
    ("APP_DIR", "/srv/app;"), ("APP_DIR", "srv/app"), ("APP_DIR", "/srv/{app}"),
])
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingError) as raised:
        load({name: value}, tmp_path)
    message = str(raised.value)
    assert raised.value.name == name
    assert message.startswith(f"invalid {name}={value!r}: expected ")
    assert "\n" not in message


def test_readme_table_is_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate with: python -m stack.settings"


# For each setting, a value other than its default: the start must hand it on.
OTHER_VALUES = {
    "APP_MODULE": "slow:app", "APP_DIR": "/srv/other", "PORT": "8080", "WEB_CONCURRENCY": "7",
    "WORKER_CLASS": "sync", "THREADS": "3", "TIMEOUT": "31", "GRACEFUL_TIMEOUT": "6",
    "MAX_REQUESTS": "500", "KEEPALIVE_TIMEOUT": "70", "ROOT_PATH": "/shop",
    "STATIC_URL": "/assets", "STATIC_PATH": "/srv/files", "MAX_BODY_SIZE": "2m",
    "TRUSTED_PROXIES": "10.0.0.0/8", "LOG_LEVEL": "debug", "LOG_FORMAT": "text",
    "COMPRESSION": "off", "ACCESS_LOG": "off", "WEBSOCKET_TIMEOUT": "60",
    "DRAIN_SECONDS": "4", "METRICS": "off", "METRICS_PORT": "9000", "DEV": "on",
}


def handed_on(started: Start) -> dict[str, object]:
    """What each consumer of the settings got: Nginx's config (less what differs
    from run to run: the secret, the access log pipe's fd), Gunicorn's,
    Supervisord's, and what PID 1 keeps for itself."""
    nginx = started.nginx.replace(started.environ[PROXY_TOKEN_ENV], "TOKEN")
    plain = (str, int, float, bool, list, tuple, dict, type(None))
    return {"nginx": re.sub(r"/proc/\d+/fd/\d+", "PIPE", nginx),
            "gunicorn": {name: value for name, value in started.gunicorn.items()
                         if not name.startswith("_") and isinstance(value, plain)},
            "supervisord": started.waits,
            **{f"entrypoint {name}": value for name, value in started.entrypoint.items()}}


def test_every_setting_reaches_its_consumer(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """No documented setting is dead: set to another value, each changes what the
    entrypoint renders for Nginx or Gunicorn, gives Supervisord, or keeps itself."""
    assert set(OTHER_VALUES) == {item.name for item in SETTINGS}
    default = handed_on(start(monkeypatch, tmp_path, {}))
    dead = []
    for name, value in OTHER_VALUES.items():
        assert getattr(load({name: value}), name.lower()) != getattr(load({}), name.lower())
        changed = handed_on(start(monkeypatch, tmp_path, {name: value}))
        if not [part for part in default if changed[part] != default[part]]:
            dead.append(name)
    assert not dead, f"handed on to nothing: {dead}"
