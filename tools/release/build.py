"""The release's images: every target of a variant for each platform, with Podman,
then labelled with the release's own values.

Buildah 1.28 (Podman 4.3) keys a cached LABEL or ENV layer on the instruction's
text, `LABEL ...version="${VERSION}"`, not on the value: a machine that built
another VERSION or REVISION before reuses that image's labels (and its
FLASK_STACK_VERSION, which the metrics report). `--no-cache` would rebuild every
stage, arm64 under qemu included. Instead each built image gets one more step,
`FROM <its id>` with a LABEL and an ENV whose text holds the values themselves:
the cache keys on exactly what it must, and that step costs no build time. What
it sets is what the Dockerfile's LABELs and ENVs fill from build arguments.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.engine import Engine
from harness.images import build_image
from harness.paths import ROOT
from harness.variants import Variant
from tools.release import ReleaseError
from tools.release.tags import Target

PLATFORMS = ("linux/amd64", "linux/arm64")
LABEL = re.compile(r"^LABEL\s+((?:.*\\\n)*.*)$", re.M)
ENV = re.compile(r"^ENV\s+((?:.*\\\n)*.*)$", re.M)
PAIR = re.compile(r'([\w.-]+)="([^"]*)"')  # a LABEL's, quoted
ENV_PAIR = re.compile(r'(\w+)=([^\s"\\]+)')  # an ENV's, as this Dockerfile writes them


def architecture(platform: str) -> str:
    return platform.split("/")[1]


def templates(dockerfile: Path = ROOT / "Dockerfile", instruction: re.Pattern[str] = LABEL,
              pair: re.Pattern[str] = PAIR) -> dict[str, str]:
    """Each label (or ENV variable) the Dockerfile fills from a build argument: its
    ${ARG} template."""
    found: dict[str, str] = {}
    for text in instruction.findall(dockerfile.read_text()):
        for key, value in pair.findall(text):
            if "${" not in value:
                continue
            if found.get(key, value) != value:
                raise ReleaseError(f"the Dockerfile sets {key} to {found[key]!r} in one "
                                   f"stage and {value!r} in another")
            found[key] = value
    return found


def filled(values: dict[str, str], found: dict[str, str]) -> dict[str, str]:
    return {key: re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], template)
            for key, template in found.items()}


def labels(values: dict[str, str], dockerfile: Path = ROOT / "Dockerfile") -> dict[str, str]:
    """The release's labels: the Dockerfile's templates with these build arguments."""
    return filled(values, templates(dockerfile))


def environment(values: dict[str, str], dockerfile: Path = ROOT / "Dockerfile"
                ) -> dict[str, str]:
    """The environment variables the Dockerfile fills from build arguments, filled."""
    return filled(values, templates(dockerfile, ENV, ENV_PAIR))


@dataclass(frozen=True)
class Built:
    variant: Variant
    target: Target
    platform: str
    base_image: str
    build_args: dict[str, str]
    unlabelled: str  # what the Dockerfile's build gave: its labels may be stale
    image: str  # that, labelled: what is pushed
    id: str


def local_tag(name: str, variant: Variant, target: Target, platform: str,
              unlabelled: bool = False) -> str:
    """Where the release keeps its local images, so that a second run is cheap."""
    return (f"{name}:{variant.name}-{target.name}-{architecture(platform)}"
            + ("-unlabelled" if unlabelled else ""))


def relabel(engine: Engine, image: str, platform: str, wanted: dict[str, str], tag: str,
            work: Path, env: dict[str, str] | None = None) -> str:
    """The image plus one step whose text holds the values: the LABELs, and the
    ENV variables of `env` that the image has (the builder has none of them)."""
    image_id = engine("image", "inspect", "--format", "{{.Id}}", image)
    has = {item.split("=", 1)[0] for item in json.loads(
        engine("image", "inspect", "--format", "{{json .Config.Env}}", image)) or []}
    env = {key: value for key, value in (env or {}).items() if key in has}
    context = work / re.sub(r"[^\w.-]", "-", tag)
    context.mkdir(parents=True, exist_ok=True)
    pairs = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in wanted.items())
    steps = f"FROM {image_id}\nLABEL {pairs}\n" + "".join(
        f"ENV {key}={json.dumps(value)}\n" for key, value in env.items())
    (context / "Dockerfile").write_text(steps)
    build_image(engine, tag, platform=platform, context=context)
    found = json.loads(engine("image", "inspect", "--format", "{{json .Config.Labels}}", tag))
    wrong = {key: found.get(key) for key, value in wanted.items() if found.get(key) != value}
    found_env = dict(item.split("=", 1) for item in json.loads(
        engine("image", "inspect", "--format", "{{json .Config.Env}}", tag)))
    wrong.update({key: found_env.get(key) for key, value in env.items()
                  if found_env.get(key) != value})
    if wrong:
        raise ReleaseError(f"{tag} has {wrong}, not {wanted} and {env}")
    return tag


def build(engine: Engine, variant: Variant, target: Target, platform: str, base_image: str,
          values: dict[str, str], name: str, work: Path) -> Built:
    """One target for one platform: the Dockerfile's build, shared with every other
    build on the machine through the layer cache (the heavy stages' build
    arguments are the variant's alone), then labelled."""
    unlabelled = build_image(engine, local_tag(name, variant, target, platform, True),
                             target.stage, platform=platform, base_image=base_image,
                             build_args=variant.build_args)
    image = relabel(engine, unlabelled, platform, labels(values),
                    local_tag(name, variant, target, platform), work, environment(values))
    found = engine("image", "inspect", "--format", "{{.Id}} {{.Architecture}}", image).split()
    if found[1] != architecture(platform):
        raise ReleaseError(f"{image} is for {found[1]}, not {platform}")
    return Built(variant, target, platform, base_image,
                 {**variant.build_args, "BASE_IMAGE": base_image}, unlabelled, image, found[0])
