"""A container registry on loopback: Debian's docker-registry (the CNCF Distribution
registry 2.8), started for a test and read through its HTTP API."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from harness.server import ServerError, free_port

START_SECONDS = 30
# What a client says it takes: every manifest kind, so the registry returns each as stored.
MANIFESTS = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))


@dataclass
class Manifest:
    digest: str  # sha256:..., of the bytes the registry returned
    media_type: str
    body: dict[str, Any]


@dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, accept: str = MANIFESTS) -> requests.Response:
        response = requests.get(f"http://{self.address}/v2/{path}",
                                headers={"Accept": accept}, timeout=30)
        response.raise_for_status()
        return response

    def repositories(self) -> list[str]:
        found: list[str] = self.get("_catalog").json()["repositories"]
        return found

    def tags(self, repository: str) -> list[str]:
        found: list[str] = self.get(f"{repository}/tags/list").json().get("tags") or []
        return found

    def manifest(self, repository: str, reference: str) -> Manifest:
        response = self.get(f"{repository}/manifests/{reference}")
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        assert response.headers["Docker-Content-Digest"] == digest
        return Manifest(digest, response.headers["Content-Type"], response.json())

    def blob(self, repository: str, digest: str) -> bytes:
        data = self.get(f"{repository}/blobs/{digest}", accept="*/*").content
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_registry(directory: Path) -> Registry:
    """docker-registry on a free loopback port, storing under directory."""
    command = shutil.which("docker-registry")
    if command is None:
        raise ServerError("no docker-registry: apt-get install docker-registry")
    address = f"127.0.0.1:{free_port()}"
    config = directory / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {directory / 'storage'}\n"
                      f"http:\n  addr: {address}\n")
    log = directory / "registry.log"
    with log.open("wb") as output:
        process = subprocess.Popen([command, "serve", str(config)], stdout=output,
                                   stderr=subprocess.STDOUT)
    registry = Registry(address, process, log)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if requests.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                return registry
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise ServerError(f"docker-registry did not answer on {address}:\n"
                              f"{log.read_text()}")
        time.sleep(0.1)
