"""The release command: `python -m tools.release --registry HOST:PORT --sign-by FINGERPRINT`,
from the repository root (docs/releasing.md)."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness.engine import Engine, EngineError
from harness.images import copy_out
from harness.paths import ROOT
from harness.variants import VARIANTS, Variant, variant
from stack.build.sbom import CDX_FILE, SBOM_DIR, SPDX_FILE
from tools.release import ReleaseError
from tools.release.build import PLATFORMS, Built, architecture, build, labels
from tools.release.provenance import MEDIA_TYPE, statement
from tools.release.publish import Registry, artifact, export, index, write_policy
from tools.release.signing import detach_sign, registries_d, require_key
from tools.release.tags import (
    ATTESTATION_SUFFIX,
    REPOSITORY,
    SBOM_SUFFIX,
    TARGETS,
    arg_default,
    attached,
    tags,
    version,
)

SBOM_TYPE = "application/vnd.flask-stack.sbom.v1+json"
SBOM_LAYERS = ((SPDX_FILE, "application/spdx+json"), (CDX_FILE, "application/vnd.cyclonedx+json"))
SIGNATURE_TYPE = "application/pgp-signature"
PROVENANCE_FILE = "provenance.json"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.release",
        description="Build every shipped target (the default, runtime, builder, debug) of "
                    "each variant for linux/amd64 and linux/arm64 with Podman, push each as "
                    "one OCI image index under the tag scheme of docs/your-app.md, sign every "
                    "manifest with GnuPG (simple signing), and push each image's SBOMs and "
                    "signed SLSA provenance beside it (tags sha256-<digest>.sbom and .att). "
                    "Run from the repository root; see docs/releasing.md.")
    parser.add_argument("--registry", required=True, metavar="HOST:PORT",
                        help="the registry to push to")
    parser.add_argument("--sign-by", required=True, metavar="FINGERPRINT",
                        help="the signing key's full fingerprint; its secret key must be in "
                             "GnuPG's keyring (GNUPGHOME): without it nothing is pushed")
    parser.add_argument("--repository", default=REPOSITORY,
                        help=f"the repository in the registry (default: {REPOSITORY})")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                        help="comma-separated variants to release (default: all, "
                             f"{','.join(v.name for v in VARIANTS)})")
    parser.add_argument("--base-image", action="append", default=[],
                        metavar="VARIANT/ARCH=IMAGE",
                        help="the base image for one variant and architecture, e.g. "
                             "py3.13/arm64=localhost/debian:trixie-slim-arm64 (default: the "
                             "ones .ci/base-image makes); repeat for each")
    parser.add_argument("--signatures", type=Path, default=Path("signatures"),
                        help="where the manifests' signatures are written, to be published "
                             "at the URL users' registries.d `lookaside` names "
                             "(default: ./signatures)")
    parser.add_argument("--sign-passphrase-file", type=Path,
                        help="a file holding the signing key's passphrase, if it has one")
    parser.add_argument("--insecure", action="store_true",
                        help="plain HTTP, no TLS verification: a registry on loopback")
    parser.add_argument("--revision",
                        help="the source revision the labels and provenance name (default: "
                             "git HEAD; then the work tree must have no changes)")
    parser.add_argument("--source",
                        help="the source repository's URL (default: git's `origin`, else "
                             "the Dockerfile's SOURCE)")
    parser.add_argument("--builder-id", default=f"urn:flask-stack:builder:{socket.gethostname()}",
                        help="the provenance's builder id (default: this host)")
    parser.add_argument("--local-name", default="localhost/flask-stack-release",
                        help="the local name the built images are tagged under, so a second "
                             "run reuses them (default: localhost/flask-stack-release)")
    parser.add_argument("--work-dir", type=Path,
                        help="scratch space for the exported images (default: a temporary "
                             "directory, removed afterwards)")
    return parser.parse_args(argv)


def revision_and_source(args: argparse.Namespace) -> tuple[str, str]:
    revision = args.revision
    if revision is None:
        if git("status", "--porcelain", "--untracked-files=no"):
            raise ReleaseError("the work tree has changes: commit them, or name the revision "
                               "with --revision")
        revision = git("rev-parse", "HEAD")
    source = args.source
    if source is None:
        remote = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"],
                                capture_output=True, text=True)
        source = remote.stdout.strip() if remote.returncode == 0 else arg_default("SOURCE")
    return revision, source


def base_images(args: argparse.Namespace, variants: list[Variant],
                engine: Engine) -> dict[tuple[str, str], str]:
    """(variant, platform) -> the base image, each checked to be there."""
    overrides = {}
    for entry in args.base_image:
        key, sep, image = entry.partition("=")
        if not sep or "/" not in key:
            raise ReleaseError(f"--base-image takes VARIANT/ARCH=IMAGE, not {entry!r}")
        overrides[key] = image
    found = {}
    for chosen in variants:
        for platform in PLATFORMS:
            arch = architecture(platform)
            image = overrides.get(f"{chosen.name}/{arch}") or chosen.local_base(arch)
            if subprocess.run([engine.command, "image", "exists", image]).returncode != 0:
                raise ReleaseError(f"no base image {image} for {chosen.name} on {platform}: "
                                   f"make it with .ci/base-image, or name one with "
                                   f"--base-image {chosen.name}/{arch}=IMAGE")
            found[(chosen.name, platform)] = image
    return found


def release(args: argparse.Namespace) -> list[str]:
    """The whole release; one line per pushed tag."""
    fingerprint = require_key(args.sign_by)
    try:
        variants = [variant(name) for name in args.variants.split(",") if name]
    except ValueError as error:
        raise ReleaseError(str(error)) from error
    engine = Engine("podman")
    if not engine.answers():
        raise ReleaseError("the release builds with Podman, and `podman info` fails")
    stack_version = version()
    revision, source = revision_and_source(args)
    bases = base_images(args, variants, engine)
    started, invocation = now(), str(uuid.uuid4())
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="flask-stack-release-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = Registry(args.registry, args.repository, fingerprint,
                        registries_d(work / "registries.d", f"{args.registry}/{args.repository}",
                                     args.signatures),
                        args.signatures, write_policy(work / "policy.json"), not args.insecure,
                        args.sign_passphrase_file)
    values = {chosen.name: {"VERSION": stack_version, "REVISION": revision, "SOURCE": source,
                            **chosen.build_args} for chosen in variants}
    lines = []
    try:
        # Every image first: a build that fails leaves nothing half pushed.
        built = [[build(engine, chosen, target, platform, bases[(chosen.name, platform)],
                        values[chosen.name], args.local_name, work) for platform in PLATFORMS]
                 for chosen in variants for target in TARGETS]
        for images in built:
            lines += publish(engine, registry, images, work, stack_version,
                             values[images[0].variant.name], source, revision, args.builder_id,
                             invocation, started)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return lines


def publish(engine: Engine, registry: Registry, built: list[Built], work: Path,
            stack_version: str, values: dict[str, str], source: str, revision: str,
            builder_id: str, invocation: str, started: str) -> list[str]:
    """One target of one variant: its index under every tag, then beside each image its
    SBOMs and its signed provenance."""
    first = built[0]
    target_tags = tags(stack_version, first.variant, first.target)
    name = f"{first.variant.name}-{first.target.name}"
    exported = {b.platform: (work / name / architecture(b.platform),
                             export(b.id, work / name / architecture(b.platform),
                                    registry.policy))
                for b in built}
    pushed = index(exported, work / name / "index")
    for tag in target_tags:
        registry.push(work / name / "index", tag, every_image=True)
    lines = [f"{registry.name}:{tag} {pushed.digest}" for tag in target_tags]
    for image in built:
        _, descriptor = exported[image.platform]
        arch = architecture(image.platform)
        sboms = copy_out(engine, image.image, SBOM_DIR, work / name / f"sbom-{arch}")
        files = [(title, media_type, (sboms / title).read_bytes())
                 for title, media_type in SBOM_LAYERS]
        sbom_artifact = work / name / f"sbom-artifact-{arch}"
        artifact(sbom_artifact, SBOM_TYPE, descriptor, files)
        sbom_tag = attached(descriptor.digest, SBOM_SUFFIX)
        registry.push(sbom_artifact, sbom_tag)
        base_digest = engine("image", "inspect", "--format", "{{.Digest}}", image.base_image)
        document = json.dumps(statement(
            image, descriptor, registry.name, target_tags, version=stack_version,
            source=source, revision=revision, labels=labels(values), base_digest=base_digest,
            builder_id=builder_id, invocation=invocation, started=started,
            finished=now()), indent=1).encode()
        signature = detach_sign(document, registry.sign_by, registry.passphrase_file)
        attestation = work / name / f"attestation-{arch}"
        artifact(attestation, MEDIA_TYPE, descriptor,
                 [(PROVENANCE_FILE, MEDIA_TYPE, document),
                  (f"{PROVENANCE_FILE}.asc", SIGNATURE_TYPE, signature)])
        att_tag = attached(descriptor.digest, ATTESTATION_SUFFIX)
        registry.push(attestation, att_tag)
        lines += [f"{registry.name}:{sbom_tag} ({image.platform})",
                  f"{registry.name}:{att_tag} ({image.platform})"]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        for line in release(args):
            print(line)
    except (ReleaseError, EngineError, subprocess.CalledProcessError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
