"""Nginx's configuration from any settings: a value is refused at start (exit 78),
or the rendered file holds exactly the directives of the default one, so no
value can inject a directive (stack/nginx_config.py, nginx/nginx.conf.j2)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import crossplane
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack import nginx_config
from stack.metrics import ACCESS_FIELDS, request_fields
from stack.rundir import RunDir
from stack.settings import SETTINGS, SettingError, load

# Characters that end, open or quote a directive, begin a comment or a variable,
# beside ordinary ones: what an injection is made of.
HOSTILE = st.text(st.sampled_from([*";{}'\"$#\\ \t\n\r\x00/.:,-_", "a", "1", "/"]),
                  max_size=24)
# After a start that each setting's parser would accept, as an injection is.
PREFIXES = st.sampled_from(["", "/", "/srv/x/", "/static", "1", "1m", "10.0.0.1", "on", "info",
                            "app:app"])
VALUES = st.one_of(st.builds(str.__add__, PREFIXES, HOSTILE), st.text(max_size=24))
# Repeated once per trusted network: their number is the value's, not an injection's.
PER_NETWORK = {"set_real_ip_from"}
TABLES = {"map", "geo", "types"}  # blocks of key-value entries
FIXTURES = [HealthCheck.function_scoped_fixture]  # module-scoped ones, in fact


def render(environ: dict[str, str], run: RunDir) -> Path:
    """The file the entrypoint renders for these settings (SettingError if refused)."""
    target = Path(run.nginx_conf)
    nginx_config._render("nginx.conf.j2", nginx_config.values(
        load(environ), run, str(Path(run.root, "access.log")), "token"), target)
    return target


def shape(directives: list[dict[str, Any]], table: bool = False) -> list[Any]:
    """The tree of directive names, without the per-network ones and the geo
    block's networks. In a map's table an entry's key is a value, not a
    directive: its name does not count, but how many arguments it has."""
    tree = []
    for directive in directives:
        if directive["directive"] in PER_NETWORK:
            continue
        block = directive.get("block")
        if directive["directive"] == "geo":
            block = [entry for entry in block if entry["directive"] == "default"]
        name = "(entry)" if table else directive["directive"]
        tree.append((name, len(directive["args"]) if block is None else -1,
                     shape(block, table=directive["directive"] in TABLES)
                     if block is not None else None))
    return tree


def parsed(path: Path) -> list[dict[str, Any]]:
    result = crossplane.parse(str(path), single=True, strict=False, check_ctx=False)
    assert result["status"] == "ok", result["errors"]
    return result["config"][0]["parsed"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    root = RunDir.under(str(tmp_path_factory.mktemp("nginx-config")))
    Path(root.root).mkdir()
    return root


@pytest.fixture(scope="module")
def default_shape(run: RunDir) -> list[Any]:
    return shape(parsed(render({}, run)))


@pytest.mark.app
@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES)
@given(name=st.sampled_from([item.name for item in SETTINGS]), value=VALUES)
def test_a_setting_is_refused_or_injects_nothing(run: RunDir, default_shape: list[Any],
                                                 name: str, value: str) -> None:
    try:
        rendered = render({name: value}, run)
    except SettingError as error:
        assert error.name == name and "\n" not in str(error)
        return
    assert shape(parsed(rendered)) == default_shape, (name, value)


@pytest.mark.app
@pytest.mark.parametrize(("name", "value"), [
    ("STATIC_PATH", "/srv/x; autoindex on"), ("STATIC_PATH", "/srv/x}location /{"),
    ("STATIC_URL", "/s { return 200 x; }"), ("APP_DIR", "/srv/x;"),
    ("TRUSTED_PROXIES", "10.0.0.1; allow all"), ("MAX_BODY_SIZE", "1m; autoindex on"),
    ("PORT", "1300 ssl"), ("LOG_LEVEL", "info; include /etc/passwd"),
])
def test_known_injections_are_refused(run: RunDir, name: str, value: str) -> None:
    with pytest.raises(SettingError):
        render({name: value}, run)


@pytest.mark.stack
@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURES)
@given(name=st.sampled_from([item.name for item in SETTINGS]), value=VALUES)
def test_nginx_accepts_what_the_settings_accept(run: RunDir, require: Any, name: str,
                                                value: str) -> None:
    """`nginx -t` on a sample of the files the property above allows."""
    require(shutil.which("nginx"), "nginx is not installed (apt-get install nginx-light)")
    try:
        rendered = render({name: value}, run)
    except SettingError:
        return
    test = subprocess.run(["nginx", "-t", "-q", "-p", run.root, "-c", str(rendered)],
                          capture_output=True, text=True)
    assert test.returncode == 0, (name, value, test.stderr)


# A value for each variable of the access log's format, awkward where a client
# chooses it: quotes, backslashes and braces in the path, an empty body length.
LOGGED = {"$request_uri": '/o/"x"\\y}?{a=1', "$request_method": "PATCH",
          "$route": "/orders/<int:order_id>", "$status": "404", "$body_bytes_sent": "17",
          "$content_length": "", "$request_time": "0.125", "$http_user_agent": 'a "b" \\c'}


@pytest.mark.app
def test_the_metrics_read_each_access_log_line_as_json_would(run: RunDir) -> None:
    """stack/metrics.py finds its fields in an access log line by a regular
    expression that knows log_format's order: a line the rendered format makes
    gives the same fields as json.loads, and it is the expression that read it."""
    (log_format,) = [d for d in crossplane_all(parsed(render({}, run)))
                     if d["directive"] == "log_format"]
    _name, escape, *template = log_format["args"]
    assert escape == "escape=json"
    line = "".join(template)
    for variable in sorted(set(re.findall(r"\$\w+", line)), key=len, reverse=True):
        value = LOGGED.get(variable, "v")
        line = line.replace(variable, json.dumps(value)[1:-1])
    raw = line.encode()
    assert ACCESS_FIELDS.search(raw), line
    fast, slow = request_fields(raw), json.loads(raw)
    assert (fast["method"], fast["route"], str(fast["status"])) == (
        slow["method"], slow["route"], str(slow["status"]))
    assert (int(fast["bytes"]), float(fast["duration"])) == (slow["bytes"], slow["duration"])
    assert int(fast["request_body_bytes"] or 0) == int(slow["request_body_bytes"] or 0)


def crossplane_all(directives: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every directive, nested ones too."""
    found = []
    for directive in directives:
        found.append(directive)
        found += crossplane_all(directive.get("block") or [])
    return found
