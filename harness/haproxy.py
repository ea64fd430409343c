"""HAProxy as a local process in front of replicas on loopback, driven through its
runtime API: deploy/haproxy/haproxy.cfg with only its server-template line
swapped for the replicas' ports."""

from __future__ import annotations

import csv
import io
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.deployfiles import HAPROXY_CFG
from harness.localprocess import LocalProcess
from harness.server import ServerError

BACKEND = "app"
SERVER_TEMPLATE = re.compile(rf"^\s*server-template\s+{BACKEND}\s.*$", re.M)
UP_SECONDS = 60


@dataclass
class HAProxy(LocalProcess):
    servers: dict[str, int]  # name -> loopback port
    log_name = "haproxy.log"

    @property
    def admin(self) -> Path:
        return self.work / "admin.sock"

    def start(self) -> HAProxy:
        text = HAPROXY_CFG.read_text()
        if len(SERVER_TEMPLATE.findall(text)) != 1:
            raise ValueError(f"{HAPROXY_CFG} has no single server-template line")
        lines = "\n".join(f"    server {name} 127.0.0.1:{port}"
                          for name, port in self.servers.items())
        (self.work / "haproxy.cfg").write_text(SERVER_TEMPLATE.sub(lines, text))
        # The runtime API, for the tests only: a second global section adds it.
        (self.work / "admin.cfg").write_text(
            f"global\n    stats socket {self.admin} mode 600 level admin\n")
        self.spawn(["haproxy", "-db", "-f", str(self.work / "haproxy.cfg"),
                    "-f", str(self.work / "admin.cfg")],
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                        "LISTEN": f"127.0.0.1:{self.port}"})
        self.wait(lambda: all(self.status(name) == "UP" for name in self.servers), UP_SECONDS,
                  "every replica UP in HAProxy")
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(5)
            admin.connect(str(self.admin))
            admin.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend: one row per server and one for the backend itself."""
        text = self.command("show stat").removeprefix("# ")
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == BACKEND}

    def status(self, server: str) -> str:
        try:
            return self.stats()[server]["status"]
        except OSError:  # not listening on its socket yet
            return ""

    def move(self, server: str, port: int) -> None:
        """Point a server at another replica, as a balancer learns a replaced one."""
        self.command(f"set server {BACKEND}/{server} addr 127.0.0.1 port {port}")

    def wait(self, condition: Callable[[], bool], seconds: float, what: str) -> float:
        """Poll until condition() holds; how long it took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.process is None or self.process.poll() is not None:
                raise ServerError(f"HAProxy exited:\n{self.logs()}")
            if condition():
                return time.monotonic() - started
            time.sleep(0.05)
        raise ServerError(f"not {what} after {seconds} s:\n{self.logs()}")
