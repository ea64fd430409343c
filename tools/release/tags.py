"""The tag scheme (docs/your-app.md, "Versions and tags"), in one place: the release
pushes these tags and its test expects exactly them.

Each target of each variant takes the full version with the variant's name, the
version without its patch number, and on the default variant a moving tag
(`latest`, `runtime`, `builder`; `debug` has none: pin it on purpose). Beside
each image, cosign's scheme names what is tied to its digest:
`sha256-<hex>.sbom` and `sha256-<hex>.att`, which any registry stores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.paths import ROOT
from harness.variants import DEFAULT, Variant

REPOSITORY = "flask-stack"
SBOM_SUFFIX, ATTESTATION_SUFFIX = "sbom", "att"


@dataclass(frozen=True)
class Target:
    name: str
    stage: str | None  # the Dockerfile's --target; None: its default (last) stage
    suffix: str  # after the version and variant: 1.0.0-py3.13-runtime
    moving: str | None  # the moving tag, on the default variant only


TARGETS = (
    Target("default", None, "", "latest"),
    Target("runtime", "runtime", "-runtime", "runtime"),
    Target("builder", "builder", "-builder", "builder"),
    Target("debug", "debug", "-debug", None),
)


def arg_default(name: str, dockerfile: Path = ROOT / "Dockerfile") -> str:
    """A build argument's default, as the Dockerfile's `ARG NAME=VALUE` gives it."""
    found = re.search(rf"^ARG {name}=(\S+)$", dockerfile.read_text(), re.M)
    if not found:
        raise ValueError(f"no `ARG {name}=...` in {dockerfile}")
    return found[1]


def version(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The stack's version: `ARG VERSION` in the Dockerfile, its one place."""
    found = arg_default("VERSION", dockerfile)
    if not re.fullmatch(r"\d+\.\d+\.\d+", found):
        raise ValueError(f"VERSION {found!r} in {dockerfile} is not MAJOR.MINOR.PATCH")
    return found


def tags(release: str, variant: Variant, target: Target) -> list[str]:
    """The tags one image index takes: 1.0.0-py3.13-runtime, 1.0-py3.13-runtime, runtime."""
    minor = release.rsplit(".", 1)[0]
    found = [f"{release}-{variant.name}{target.suffix}", f"{minor}-{variant.name}{target.suffix}"]
    if variant == DEFAULT and target.moving:
        found.append(target.moving)
    return found


def scheme(release: str, variants: tuple[Variant, ...]) -> dict[tuple[str, str], list[str]]:
    """Every image index of a release, (variant, target) -> its tags."""
    return {(variant.name, target.name): tags(release, variant, target)
            for variant in variants for target in TARGETS}


def attached(digest: str, suffix: str) -> str:
    """The tag of what is pushed beside the image with this digest."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}.{suffix}"
