"""Readers of the deployment files (compose.yaml, the HAProxy balancer, the
Swarm stack, the Kubernetes manifests): what the deploy tests and the docs' numbers check."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import yaml

from harness.paths import ROOT
from stack.settings import Settings, load

COMPOSE = ROOT / "compose.yaml"
HAPROXY_DIR = ROOT / "deploy" / "haproxy"
HAPROXY_CFG = HAPROXY_DIR / "haproxy.cfg"
KUBERNETES = ROOT / "deploy" / "kubernetes"
SWARM_STACK = ROOT / "deploy" / "swarm" / "stack.yaml"
KUBERNETES_MINIMUM = "1.30.0"  # preStop.sleep: beta, on by default, from 1.30
UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}


def seconds(text: str | int) -> float:
    """A Compose or HAProxy duration ("25s", "1m30s", "200ms", 60) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)?", str(text).strip())
    assert parts and "".join(n + u for n, u in parts) == str(text).strip(), text
    return sum(float(number) * UNITS[unit or "s"] for number, unit in parts)


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@cache
def swarm_stack() -> dict[str, Any]:
    return yaml.safe_load(SWARM_STACK.read_text())


def app_settings(environment: dict[str, Any] | list[dict[str, Any]]) -> Settings:
    """The settings a deployment gives the image, parsed by the image's own rules."""
    if isinstance(environment, list):  # Kubernetes env: [{name, value}]
        environment = {item["name"]: item["value"] for item in environment}
    return load({key: str(value) for key, value in environment.items()})


@cache
def haproxy() -> dict[str, Any]:
    """The values of deploy/haproxy/haproxy.cfg that the budget and the stop depend on."""
    text = HAPROXY_CFG.read_text()
    env = dict(re.findall(r'^\s*presetenv\s+(\w+)\s+"?([^"\s]+)"?', text, re.M))
    text = re.sub(r'"?\$\{(\w+)\}"?', lambda m: env[m[1]], text)
    timeouts = {name: seconds(value)
                for name, value in re.findall(r"^\s*timeout\s+(\S+)\s+(\S+)", text, re.M)}
    default_server = re.search(r"^\s*default-server\s+(.*)$", text, re.M)
    assert default_server, "haproxy.cfg: no default-server line"
    options = default_server[1].split()
    # server-template NAME COUNT SERVICE:PORT ...: the replicas, found by DNS.
    template = re.search(r"^\s*server-template\s+\S+\s+(\d+)\s+(\S+):(\d+)\s", text, re.M)
    assert template, "haproxy.cfg: no server-template line"
    return {
        "text": text,
        "servers": int(template[1]),
        "service": template[2],
        "port": int(template[3]),
        "timeouts": timeouts,
        "inter": seconds(options[options.index("inter") + 1]),
        "fall": int(options[options.index("fall") + 1]),
        "rise": int(options[options.index("rise") + 1]),
        "check": "check" in options,
    }


@cache
def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def deployment_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return container
