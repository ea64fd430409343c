"""A program the tests run as one local process on loopback, its output in a file
of its own work directory (HAProxy, Prometheus): how it starts, logs and stops."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness.local import LocalServer


@dataclass
class LocalProcess(LocalServer):
    work: Path
    log_name: ClassVar[str]  # its output's file in `work`
    stop_seconds: ClassVar[float] = 10  # after SIGTERM, then SIGKILL

    @property
    def log_path(self) -> Path:
        return self.work / self.log_name

    def spawn(self, command: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(command, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
