"""What the entrypoint makes of an environment, with Supervisord left out: the
entrypoint's main() runs up to where it would hand over, and what it rendered
and handed on is read back (for the app layer's tests of settings and docs)."""

from __future__ import annotations

import configparser
import re
import runpy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gunicorn.util
import pytest

import stack.metrics
import stack.settings
from stack import entrypoint, rundir
from stack.settings import SETTINGS, Settings, load

# Environment variables the entrypoint sets for supervisord.conf.
STACK_ENV = ("STACK_ROOT", rundir.ENV, "STACK_PYTHON", "STACK_NGINX_STOP_WAIT",
             "STACK_GUNICORN_STOP_WAIT", rundir.PROXY_TOKEN_ENV)


@dataclass(frozen=True)
class Start:
    settings: Settings
    nginx: str  # the rendered nginx.conf
    gunicorn: dict[str, Any]  # the names gunicorn.conf.py defines
    waits: dict[str, int]  # each supervisord.conf section's stopwaitsecs
    environ: dict[str, str]  # the environment Supervisord and its programs get
    # What PID 1 keeps: Supervisord's arguments, the watchdog's drain, the log
    # router's format and access lines, the metrics' port (None: no metrics).
    entrypoint: dict[str, Any]

    def directive(self, name: str, upstream: bool = False) -> str:
        """An Nginx directive's arguments: in the `upstream` block, or anywhere else."""
        block = re.search(r"upstream \w+ \{(.*?)\}", self.nginx, re.S)
        assert block, "no upstream block in nginx.conf"
        # Named locations (a WebSocket's own timeouts) are not the general case.
        general = re.sub(r"location @\w+ \{.*?\}", "", self.nginx.replace(block[0], ""),
                         flags=re.S)
        text = block[1] if upstream else general
        (value,) = re.findall(rf"^\s*{name}\s+([^;]*);", text, re.M)
        return value

    def seconds(self, name: str, upstream: bool = False) -> int:
        value = self.directive(name, upstream)
        assert value.endswith("s"), value
        return int(value.removesuffix("s"))

    @property
    def stop_ceiling(self) -> int:
        """The drain, then Supervisord stops its programs one after another, each for up
        to its stopwaitsecs."""
        return self.settings.drain_seconds + sum(self.waits.values())


def start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environ: Mapping[str, Any],
          cpus: int = 2, open_files: tuple[int, int] = (1024, 1 << 20)) -> Start:
    """Run the entrypoint's main() with `environ`, `cpus` CPUs and (soft, hard) open-files
    limits, up to where it would hand over to Supervisord; read back what it made."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)
    for name in STACK_ENV:
        monkeypatch.setenv(name, "")  # so the values main() sets are undone afterwards
    for name, value in environ.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(stack.settings, "available_cpus", lambda *_: cpus)
    limits = {"open_files": open_files}  # what setrlimit sets, getrlimit then reads
    monkeypatch.setattr(entrypoint.resource, "getrlimit", lambda _: limits["open_files"])
    monkeypatch.setattr(entrypoint.resource, "setrlimit",
                        lambda _, value: limits.update(open_files=value))
    monkeypatch.setattr(entrypoint.poller, "Poller", entrypoint.poller.Poller)
    monkeypatch.setattr(entrypoint.supervisord, "Supervisor", entrypoint.supervisord.Supervisor)
    monkeypatch.setattr(gunicorn.util, "write_error", gunicorn.util.write_error)
    # The numbers are in what it renders: Nginx's own test of it is the stack layer's.
    monkeypatch.setattr(entrypoint.nginx_config, "test", lambda *_: True)
    ports: list[int] = []
    monkeypatch.setattr(stack.metrics.Metrics, "serve", lambda _, port: ports.append(port))
    handed: list[list[str]] = []
    monkeypatch.setattr(entrypoint.supervisord, "main", handed.append)
    assert entrypoint.main([]) == 0
    (args,) = handed
    env = dict(entrypoint.os.environ)

    def expand(value: str) -> str:
        return re.sub(r"%\(ENV_(\w+)\)s", lambda match: env[match[1]], value)

    supervisor = configparser.ConfigParser(interpolation=None)
    supervisor.read(args[args.index("--configuration") + 1])
    waits = {name: int(expand(supervisor[name]["stopwaitsecs"]))
             for name in supervisor.sections() if ":" in name}
    config = re.search(r"--config\s+(\S+)", supervisor["program:gunicorn"]["command"])
    assert config, "supervisord.conf starts Gunicorn without --config"
    watchdog = entrypoint.supervisord.Supervisor.keywords  # the partial main() set
    return Start(
        settings=load(),
        nginx=(Path(env[rundir.ENV]) / "nginx.conf").read_text(),
        gunicorn=runpy.run_path(expand(config[1])),
        waits=waits,
        environ=env,
        entrypoint={"supervisord": args, "drain_seconds": watchdog["drain_seconds"],
                    "text": watchdog["router"].text,
                    "print_access": watchdog["router"].print_access,
                    "metrics_port": ports[0] if ports else None},
    )
