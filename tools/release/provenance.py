"""Provenance: an in-toto statement (v1) with a SLSA v1 provenance predicate for
each pushed image: the source revision, the build arguments, the base image's
digest and the builder. buildType names this release command's way of building
(docs/releasing.md describes its parameters)."""

from __future__ import annotations

import subprocess
from typing import Any

from tools.release.build import Built
from tools.release.publish import Descriptor

STATEMENT = "https://in-toto.io/Statement/v1"
SLSA = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:flask-stack:release:v1"
MEDIA_TYPE = "application/vnd.in-toto+json"


def tool_version(command: str) -> str:
    """`COMMAND --version`'s version number."""
    output = subprocess.run([command, "--version"], capture_output=True, text=True,
                            timeout=60).stdout
    return next((word for word in output.split() if word[:1].isdigit()), output.strip())


def statement(built: Built, pushed: Descriptor, name: str, tags: list[str], *, version: str,
              source: str, revision: str, labels: dict[str, str], base_digest: str,
              builder_id: str, invocation: str, started: str, finished: str) -> dict[str, Any]:
    algorithm, _, hexdigest = pushed.digest.partition(":")
    source_ref = {"uri": f"git+{source}", "digest": {"gitCommit": revision}}
    base_algorithm, _, base_hex = base_digest.partition(":")
    return {
        "_type": STATEMENT,
        "subject": [{"name": name, "digest": {algorithm: hexdigest}}],
        "predicateType": SLSA,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": source_ref, "dockerfile": "Dockerfile",
                    "target": built.target.stage or "(default)", "platform": built.platform,
                    "variant": built.variant.name, "version": version, "tags": tags},
                "internalParameters": {"buildArgs": built.build_args, "labels": labels},
                "resolvedDependencies": [
                    source_ref,
                    {"name": "BASE_IMAGE", "uri": f"docker://{built.base_image}",
                     "digest": {base_algorithm: base_hex}}],
            },
            "runDetails": {
                "builder": {"id": builder_id,
                            "version": {tool: tool_version(tool)
                                        for tool in ("podman", "skopeo")}},
                "metadata": {"invocationId": invocation, "startedOn": started,
                             "finishedOn": finished},
            },
        },
    }
