"""Settings: parsing, CPU detection, and the README table kept equal to the code."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import jinja2
import jinja2.nodes
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


@pytest.mark.parametrize("timeout", ["1", "30", "3600"])
def test_timeouts_are_ordered(tmp_path: Path, timeout: str) -> None:
    settings = load({"TIMEOUT": timeout}, tmp_path)
    assert settings.proxy_timeout > settings.timeout  # the worker gives up first
    assert settings.gunicorn_keepalive > settings.upstream_keepalive  # Nginx closes first


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


def test_every_setting_is_read_somewhere() -> None:
    """No documented setting is dead: each field is read, in code rather than in a
    comment, by the Nginx template or a module of the stack (or by a property of
    Settings that one of them reads)."""
    read = set()
    for path in (ROOT / "stack").glob("*.py"):
        owners = {"settings", "_settings"} | ({"self"} if path.name == "settings.py" else set())
        read |= {node.attr for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id in owners}
    template = jinja2.Environment().parse((ROOT / "nginx" / "nginx.conf.j2").read_text())
    read |= {node.attr for node in template.find_all(jinja2.nodes.Getattr)
             if isinstance(node.node, jinja2.nodes.Name) and node.node.name == "settings"}
    assert {item.name.lower() for item in SETTINGS} <= read
