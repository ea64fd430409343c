"""Settings: parsing, CPU detection, and the README table kept equal to the code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.paths import ROOT
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


def test_defaults(tmp_path: Path) -> None:
    settings = load({}, cgroup(tmp_path, {"cpu.max": "100000 100000"}))
    assert settings.app_module == "app:app"
    assert settings.port == 1300
    assert settings.web_concurrency == 2  # at least 2, though 1 CPU
    assert load({}, cgroup(tmp_path, {"cpu.max": "200000 100000"})).web_concurrency == 3
    assert settings.max_body_size == 1024 * 1024
    assert settings.trusted_proxies == ()
    assert settings.access_log is True
    assert settings.drain_seconds == 0


def test_timeouts_are_ordered(tmp_path: Path) -> None:
    settings = load({"TIMEOUT": "30"}, tmp_path)
    assert settings.proxy_timeout > settings.timeout  # Gunicorn gives up first
    assert settings.gunicorn_keepalive > settings.upstream_keepalive  # Nginx closes first
    assert settings.keepalive_timeout > 60  # past a load balancer's usual idle timeout


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


def test_every_setting_is_read_somewhere() -> None:
    """No documented setting is dead: each field is used by a config or the entrypoint."""
    users = "".join((ROOT / path).read_text() for path in (
        "stack/gunicorn.conf.py", "nginx/nginx.conf.j2", "stack/entrypoint.py", "stack/watchdog.py",
        "stack/healthcheck.py"))
    for setting in SETTINGS:
        assert f"settings.{setting.name.lower()}" in users, setting.name
