"""The container engine: chosen by the ENGINE setting, never by which daemon answers first."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

ENGINES = ("podman", "docker")
DEFAULT = "podman"  # the engine every recipe in .ci/ was checked on


class EngineError(RuntimeError):
    """The chosen engine is unknown or does not answer."""


@dataclass(frozen=True)
class Engine:
    command: str
    # DOCKER_HOST: a daemon other than the default one (harness.swarm's own); "" for that one.
    host: str = ""

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str] | None:
        """The environment its commands run in: ours, with its DOCKER_HOST and `extra`
        (None: ours unchanged)."""
        if not self.host and not extra:
            return None
        return {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {}),
                **(extra or {})}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 env: Mapping[str, str] | None = None) -> str:
        """The command's stdout; `env` adds variables (a stack file's, say)."""
        result = subprocess.run([self.command, *args], capture_output=True, text=True,
                                timeout=timeout, env=self.environ(env))
        if check and result.returncode != 0:
            raise EngineError(f"{self.command} {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout.strip()

    def answers(self) -> bool:
        """`ENGINE info` succeeds: a CLI alone proves nothing (Docker's has no daemon here)."""
        try:
            probe = subprocess.run([self.command, "info"], capture_output=True, timeout=60,
                                   env=self.environ())
        except (OSError, subprocess.TimeoutExpired):
            return False
        return probe.returncode == 0


def name(environ: Mapping[str, str] = os.environ) -> str:
    """The engine's name from ENGINE (default podman); anything else is an error."""
    chosen = environ.get("ENGINE", "").strip() or DEFAULT
    if chosen not in ENGINES:
        raise EngineError(f"invalid ENGINE={chosen!r}: expected {' or '.join(ENGINES)}")
    return chosen


def chosen(environ: Mapping[str, str] = os.environ) -> Engine:
    """The engine ENGINE names, checked to answer."""
    engine = Engine(name(environ))
    if not engine.answers():
        raise EngineError(f"ENGINE={engine.command}, but `{engine.command} info` fails")
    return engine
