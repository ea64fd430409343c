"""Release layer: `python -m tools.release` pushes a whole release to a real registry
(Debian's docker-registry on loopback), and what is pushed is what users get: the
tag scheme, multi-architecture indexes, signatures Podman enforces, the SBOMs
and the signed provenance beside each image, images that run on both engines.

The release builds with Podman, on the layer cache test_arm64 and the image
tests share: only the stages they do not build are built here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from harness.checks import assert_contract
from harness.containers import start_container
from harness.engine import Engine
from harness.images import IMAGE_TAG, build_image, copy_out
from harness.paths import ROOT
from harness.registry import Manifest, Registry, start_registry
from harness.sboms import assert_complete, assert_valid
from harness.variants import DEFAULT, VARIANTS, Variant, variant
from stack.build.sbom import CDX_FILE, SBOM_DIR, SPDX_FILE
from tools.release.__main__ import PROVENANCE_FILE
from tools.release.build import PLATFORMS, architecture, local_tag
from tools.release.provenance import BUILD_TYPE, SLSA, STATEMENT
from tools.release.publish import OCI_INDEX
from tools.release.tags import (
    ATTESTATION_SUFFIX,
    REPOSITORY,
    SBOM_SUFFIX,
    TARGETS,
    Target,
    attached,
    scheme,
    tags,
    version,
)
from tools.xray.gather import gather

# The emulated arm64 builds take minutes; the suite's per-test limit is for requests.
pytestmark = [pytest.mark.release, pytest.mark.timeout(3000)]

# CI releases the default variant: py3.14's forky arm64 base and stages, built
# nowhere else in CI, would take longer than its time budget for this layer.
# RELEASE_VARIANTS=py3.13,py3.14 releases both.
RELEASED = tuple(variant(name) for name in
                 os.environ.get("RELEASE_VARIANTS", DEFAULT.name).split(","))
LOCAL_NAME = IMAGE_TAG.replace(":", "-") + "-release"
# What a machine may have built before: the labels its cache keeps are these.
STALE = {"VERSION": "0.0.1", "REVISION": "stale0"}
# What a build given no REVISION labels: the Dockerfile's default.
DOCKERFILE_REVISION = re.findall(r"^ARG REVISION=(\S+)$", (ROOT / "Dockerfile").read_text(),
                                 re.M)[0]
RELEASE_SECONDS = 2400


@dataclass
class Keyring:
    home: Path
    fingerprint: str
    public_key: Path

    def gpg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["gpg", "--batch", "--homedir", str(self.home), *args],
                              capture_output=True, text=True, check=check, timeout=120)


def make_key(home: Path, name: str) -> Keyring:
    """A throwaway signing key without a passphrase, as the tests need one."""
    home.mkdir(mode=0o700)
    keyring = Keyring(home, "", home / "public.asc")
    keyring.gpg("--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
                "default", "default", "never")
    listing = keyring.gpg("--with-colons", "--list-secret-keys").stdout
    # The primary key's fingerprint comes first, before its subkey's.
    keyring.fingerprint = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.M)[0]
    keyring.public_key.write_text(keyring.gpg("--armor", "--export",
                                              keyring.fingerprint).stdout)
    return keyring


@pytest.fixture(scope="module")
def podman(require: Callable[[object, str], None]) -> Engine:
    engine = Engine("podman")
    require(engine.answers(), "the release builds with Podman, and `podman info` fails")
    for tool in ("docker-registry", "skopeo", "gpg"):
        require(shutil.which(tool), f"no {tool}: apt-get install docker-registry skopeo gnupg")
    require(Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists(),
            "no arm64 emulation: apt-get install qemu-user-static binfmt-support")
    for chosen in RELEASED:
        for platform in PLATFORMS:
            base = chosen.local_base(architecture(platform))
            require(subprocess.run(["podman", "image", "exists", base]).returncode == 0,
                    f"no base image {base}: run .ci/base-image")
    return engine


@pytest.fixture(scope="module")
def docker(require: Callable[[object, str], None]) -> Engine:
    engine = Engine("docker")
    require(engine.answers(), "Docker pulls the release too, and `docker info` fails")
    return engine


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory, podman: Engine) -> Keyring:
    return make_key(tmp_path_factory.mktemp("gnupg") / "home", "release")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, podman: Engine) -> Iterator[Registry]:
    running = start_registry(tmp_path_factory.mktemp("registry"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def signatures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signatures")


def release_command(registry: Registry, fingerprint: str | None, *extra: str) -> list[str]:
    signing = ["--sign-by", fingerprint] if fingerprint else []
    return [sys.executable, "-m", "tools.release", "--registry", registry.address, *signing,
            "--insecure", "--variants", ",".join(v.name for v in RELEASED), *extra]


@dataclass
class Released:
    revision: str
    seconds: float
    output: str


@pytest.fixture(scope="module")
def released(podman: Engine, registry: Registry, key: Keyring, signatures: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Released:
    """The release, on a machine that built another VERSION and REVISION first (or
    the Dockerfile's defaults before that: Buildah's cache keeps the first)."""
    for chosen in RELEASED:
        for target in TARGETS:
            for platform in PLATFORMS:
                build_image(podman, local_tag(LOCAL_NAME, chosen, target, platform, True),
                            target.stage, platform=platform,
                            base_image=chosen.local_base(architecture(platform)),
                            build_args={**chosen.build_args, **STALE})
    revision = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    started = time.monotonic()
    result = subprocess.run(
        release_command(registry, key.fingerprint, "--signatures", str(signatures),
                        "--revision", revision, "--local-name", LOCAL_NAME,
                        "--work-dir", str(tmp_path_factory.mktemp("release-work"))),
        capture_output=True, text=True, cwd=ROOT, timeout=RELEASE_SECONDS,
        env={**os.environ, "GNUPGHOME": str(key.home)})
    assert result.returncode == 0, result.stdout + result.stderr
    return Released(revision, time.monotonic() - started, result.stdout)


@dataclass
class Pushed:
    """One image index as the registry holds it, and its images by platform."""

    variant: Variant
    target: Target
    index: Manifest
    images: dict[str, str]  # platform -> digest


@pytest.fixture(scope="module")
def pushed(released: Released, registry: Registry) -> list[Pushed]:
    found = []
    for chosen in RELEASED:
        for target in TARGETS:
            index = registry.manifest(REPOSITORY, tags(version(), chosen, target)[0])
            images = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
                      for m in index.body["manifests"]}
            found.append(Pushed(chosen, target, index, images))
    return found


# --- the scheme as documented


@pytest.mark.app
def test_the_documented_tags_are_the_schemes() -> None:
    """docs/your-app.md's table: the default variant's tags, target by target."""
    page = (ROOT / "docs" / "your-app.md").read_text()
    section = page[page.index("## Versions and tags"):page.index("## Coming from")]
    rows = {row[0].split()[0]: re.findall(r"`([^`]+)`", row[1]) for row in
            (line.strip("|").split("|") for line in section.splitlines()
             if line.startswith("| ") and "`" in line)}
    assert rows == {target.name: tags(version(), DEFAULT, target) for target in TARGETS}
    other = next(v for v in VARIANTS if v != DEFAULT)
    runtime = next(t for t in TARGETS if t.name == "runtime")
    named = re.search(r"The Python 3\.14 variant .*?\(`([^`]+)`, `([^`]+)`\)", section, re.S)
    assert named and list(named.groups()) == tags(version(), other, runtime)


# --- before anything is pushed


def test_no_push_without_a_signing_key(registry: Registry, key: Keyring,
                                       tmp_path: Path) -> None:
    refused = "flask-stack-refused"
    unsigned = subprocess.run(release_command(registry, None, "--repository", refused),
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert unsigned.returncode == 2 and "--sign-by" in unsigned.stderr
    # The right fingerprint, but a keyring without its secret key.
    (tmp_path / "empty").mkdir(mode=0o700)
    keyless = subprocess.run(release_command(registry, key.fingerprint, "--repository", refused),
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             env={**os.environ, "GNUPGHOME": str(tmp_path / "empty")})
    assert keyless.returncode == 1, keyless.stderr
    assert f"no secret key {key.fingerprint}" in keyless.stderr
    assert refused not in registry.repositories()


# --- the tags and indexes


def test_the_registry_lists_exactly_the_schemes_tags(registry: Registry,
                                                     pushed: list[Pushed]) -> None:
    expected = {tag for target_tags in scheme(version(), RELEASED).values()
                for tag in target_tags}
    expected |= {attached(digest, suffix) for index in pushed for digest in index.images.values()
                 for suffix in (SBOM_SUFFIX, ATTESTATION_SUFFIX)}
    assert sorted(registry.tags(REPOSITORY)) == sorted(expected)


def test_every_tag_is_one_oci_index_of_both_architectures(registry: Registry,
                                                         pushed: list[Pushed]) -> None:
    for index in pushed:
        assert index.index.media_type == OCI_INDEX
        assert set(index.images) == set(PLATFORMS)
        for tag in tags(version(), index.variant, index.target):
            assert registry.manifest(REPOSITORY, tag).digest == index.index.digest, tag


def test_labels_are_the_releases_whatever_the_machine_built_before(
        podman: Engine, registry: Registry, released: Released, pushed: list[Pushed]) -> None:
    for index in pushed:
        for platform, digest in index.images.items():
            manifest = registry.manifest(REPOSITORY, digest).body
            config = json.loads(registry.blob(REPOSITORY, manifest["config"]["digest"]))
            assert config["architecture"] == architecture(platform)
            labels = config["config"]["Labels"]
            assert labels["org.opencontainers.image.version"] == version()
            assert labels["org.opencontainers.image.revision"] == released.revision
            assert labels["io.flask-stack.python.version"] == index.variant.python
            assert labels["io.flask-stack.nginx.version"] == index.variant.nginx
            # What the metrics report as the stack's version (flask_stack_build_info);
            # the builder has no stack running.
            env = dict(item.split("=", 1) for item in config["config"]["Env"])
            if index.target.name != "builder":
                assert env["FLASK_STACK_VERSION"] == version()


def test_the_dockerfiles_own_labels_would_be_stale(podman: Engine, released: Released) -> None:
    """The trap the relabelling step exists for is real: the Dockerfile built with
    the release's own VERSION and REVISION as build arguments, on this machine's
    cache, does not carry them. Buildah keys the LABEL layer on its text, so the
    build reuses one an earlier build made (the fixture's, with STALE, or another
    with the Dockerfile's defaults: which one Buildah picks is its own choice)."""
    for chosen in RELEASED:
        for target in TARGETS:
            for platform in PLATFORMS:
                naive = build_image(
                    podman, local_tag(f"{LOCAL_NAME}-naive", chosen, target, platform),
                    target.stage, platform=platform,
                    base_image=chosen.local_base(architecture(platform)),
                    build_args={**chosen.build_args, "VERSION": version(),
                                "REVISION": released.revision})
                try:
                    found = json.loads(podman("image", "inspect", "--format",
                                              "{{json .Config.Labels}}", naive))
                finally:
                    podman("untag", naive, naive)  # this name only: the image is a cached one
                revision = found["org.opencontainers.image.revision"]
                assert revision != released.revision, f"{naive}: no trap, Buildah keyed the value"
                assert revision in (STALE["REVISION"], DOCKERFILE_REVISION), (naive, revision)


# --- pulling: signatures, both engines, both architectures


def trusting(directory: Path, registry: Registry, key: Keyring, lookaside: Path) -> Path:
    """A user's policy.json in directory: this registry's images must be signed by
    the release key; and their registries.d, where to read the signatures
    (docs/releasing.md): in lookaside."""
    path = directory / "policy.json"
    path.write_text(json.dumps({
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {registry.address: [{"type": "signedBy", "keyType": "GPGKeys",
                                           "keyPath": str(key.public_key)}]},
            "dir": {"": [{"type": "insecureAcceptAnything"}]}}}))
    # Podman reads registries.d from $HOME/.config/containers/ when that exists.
    registries_d = directory / "home" / ".config" / "containers" / "registries.d"
    registries_d.mkdir(parents=True)
    (registries_d / "release.yaml").write_text(
        f"docker:\n  {registry.address}:\n    lookaside: {lookaside.as_uri()}\n")
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory, registry: Registry, key: Keyring,
           signatures: Path) -> Path:
    """The user's policy, reading the signatures the release wrote."""
    return trusting(tmp_path_factory.mktemp("policy"), registry, key, signatures)


def pull(policy: Path, reference: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`podman pull` under the policy, as a user who requires the release's key."""
    return subprocess.run(["podman", "pull", "--tls-verify=false", "--signature-policy",
                           str(policy), *args, reference], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "HOME": str(policy.parent / "home")})


def skopeo(policy: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """skopeo under the user's policy and registries.d (None: no policy at all, for
    the tests' own copies), reading the loopback registry over plain HTTP."""
    trust = (["--policy", str(policy), "--registries.d",
              str(policy.parent / "home/.config/containers/registries.d")]
             if policy else ["--insecure-policy"])
    return subprocess.run(["skopeo", *trust, "copy", "--quiet", "--src-tls-verify=false",
                           *args], capture_output=True, text=True, timeout=300)


def copy_unsigned(registry: Registry, tag: str, repository: str) -> None:
    """A released index copied as it is into another repository, with no signature."""
    copied = skopeo(None, "--all", "--preserve-digests", "--remove-signatures",
                    "--dest-tls-verify=false", f"docker://{registry.address}/{REPOSITORY}:{tag}",
                    f"docker://{registry.address}/{repository}:latest")
    assert copied.returncode == 0, copied.stderr


def digest_of(pushed: list[Pushed], target: str) -> str:
    return next(p.index.digest for p in pushed if p.target.name == target
                and p.variant == DEFAULT)


def test_a_signed_tag_pulls_under_the_policy(registry: Registry, policy: Path,
                                             pushed: list[Pushed]) -> None:
    (policy.parent / "index-only").mkdir(exist_ok=True)
    for index in pushed:
        for tag in tags(version(), index.variant, index.target):
            checked = skopeo(policy, "--multi-arch", "index-only",
                             f"docker://{registry.address}/{REPOSITORY}:{tag}",
                             f"dir:{policy.parent / 'index-only' / tag}")
            assert checked.returncode == 0, checked.stderr
    reference = f"{registry.address}/{REPOSITORY}:runtime"
    runtime = pull(policy, reference)
    assert runtime.returncode == 0, runtime.stderr
    Engine("podman")("untag", runtime.stdout.strip().splitlines()[-1], reference)


def test_an_unsigned_tag_is_refused(registry: Registry, policy: Path,
                                    pushed: list[Pushed]) -> None:
    copy_unsigned(registry, "latest", "flask-stack-unsigned")
    refused = pull(policy, f"{registry.address}/flask-stack-unsigned:latest")
    assert refused.returncode != 0
    assert "A signature was required, but no signature exists" in refused.stderr


def test_a_signature_of_another_image_is_refused(registry: Registry, key: Keyring,
                                                 signatures: Path, pushed: list[Pushed],
                                                 tmp_path: Path) -> None:
    """The runtime's index and images, in their own repository, each with the
    default image's signatures in place of its own (Podman checks the image it
    pulls, not only the index). Pulled by digest, a signature's identity only
    has to name the repository (the policy's matchRepoDigestOrExact), which
    these do: the digest each signs is the one thing that is wrong."""
    default, runtime = (next(p for p in pushed if p.target.name == name and p.variant == DEFAULT)
                        for name in ("default", "runtime"))
    lookaside = tmp_path / "signatures"
    shutil.copytree(signatures, lookaside)
    pairs = [(default.index.digest, runtime.index.digest)]
    pairs += [(default.images[platform], runtime.images[platform]) for platform in PLATFORMS]
    for theirs, ours in pairs:
        forged = lookaside / f"{REPOSITORY}@{ours.replace(':', '=')}"
        shutil.rmtree(forged)
        shutil.copytree(lookaside / f"{REPOSITORY}@{theirs.replace(':', '=')}", forged)
    (tmp_path / "user").mkdir()
    policy = trusting(tmp_path / "user", registry, key, lookaside)
    refused = pull(policy, f"{registry.address}/{REPOSITORY}@{runtime.index.digest}")
    assert refused.returncode != 0
    assert "Source image rejected" in refused.stderr, refused.stderr
    # Refused for the digests the signatures name, the default's (Podman checks the
    # platform's image it copies out of the index), and for nothing else.
    named = set(re.findall(r"Signature for digest (sha256:[0-9a-f]{64}) does not match",
                           refused.stderr))
    assert named, refused.stderr
    assert named <= {default.index.digest, *default.images.values()}, refused.stderr
    assert "Signature for identity" not in refused.stderr
    assert "A signature was required" not in refused.stderr


def pulled_by_digest(policy: Path, reference: str, platform: str) -> str:
    """Podman's pull of one platform's image, under the policy; the image's id."""
    pulled = pull(policy, reference, "--platform", platform)
    assert pulled.returncode == 0, pulled.stderr
    return pulled.stdout.strip().splitlines()[-1]


def assert_serves(engine: Engine, image: str, platform: str, timeout: float) -> None:
    """The image is for the platform, and a container of it answers GET / with the contract."""
    assert engine("image", "inspect", "--format", "{{.Architecture}}", image) == (
        architecture(platform))
    container = start_container(engine, image)
    try:
        assert_contract(requests.get(f"{container.base_url}/", timeout=timeout))
    finally:
        container.remove()


def test_podman_pulls_a_tag_by_digest_and_the_amd64_image_serves(
        podman: Engine, registry: Registry, policy: Path, pushed: list[Pushed]) -> None:
    reference = f"{registry.address}/{REPOSITORY}@{digest_of(pushed, 'default')}"
    assert_serves(podman, pulled_by_digest(policy, reference, "linux/amd64"), "linux/amd64", 10)


def test_docker_pulls_a_tag_by_digest_and_the_amd64_image_serves(
        docker: Engine, registry: Registry, pushed: list[Pushed]) -> None:
    """Docker verifies no signature: the digest pins what it pulls."""
    reference = f"{registry.address}/{REPOSITORY}@{digest_of(pushed, 'default')}"
    docker("pull", "--platform", "linux/amd64", reference, timeout=600)
    try:
        assert_serves(docker, reference, "linux/amd64", 10)
    finally:
        docker("rmi", reference, check=False)


def test_the_arm64_image_answers_under_emulation(podman: Engine, registry: Registry,
                                                 policy: Path, pushed: list[Pushed]) -> None:
    reference = f"{registry.address}/{REPOSITORY}@{digest_of(pushed, 'default')}"
    assert_serves(podman, pulled_by_digest(policy, reference, "linux/arm64"), "linux/arm64", 30)


# --- beside each image: its SBOMs and its provenance


def fetch(policy: Path, registry: Registry, tag: str, directory: Path) -> dict[str, bytes]:
    """An artifact as a user fetches it, through the policy: its layers by title."""
    fetched = skopeo(policy, f"docker://{registry.address}/{REPOSITORY}:{tag}",
                     f"dir:{directory}")
    assert fetched.returncode == 0, fetched.stderr
    manifest = json.loads((directory / "manifest.json").read_text())
    return {layer["annotations"]["org.opencontainers.image.title"]:
            (directory / layer["digest"].removeprefix("sha256:")).read_bytes()
            for layer in manifest["layers"]}


def test_each_images_sboms_are_beside_it_and_its_own(
        podman: Engine, registry: Registry, policy: Path, pushed: list[Pushed],
        tmp_path: Path) -> None:
    for index in pushed:
        for platform, digest in index.images.items():
            tag = attached(digest, SBOM_SUFFIX)
            assert registry.manifest(REPOSITORY, tag).body["subject"]["digest"] == digest
            files = fetch(policy, registry, tag, tmp_path / tag)
            # The local image the release built is the one pushed: its config is the same.
            local = local_tag(LOCAL_NAME, index.variant, index.target, platform)
            config = registry.manifest(REPOSITORY, digest).body["config"]["digest"]
            assert config == "sha256:" + podman("image", "inspect", "--format", "{{.Id}}", local)
            inside = copy_out(podman, local, SBOM_DIR, tmp_path / f"{tag}-inside")
            assert files == {name: (inside / name).read_bytes()
                             for name in (SPDX_FILE, CDX_FILE)}


def test_the_arm64_images_sboms_are_valid_and_complete(podman: Engine, pushed: list[Pushed],
                                                       tmp_path: Path) -> None:
    """amd64's are checked on the same builds by test_sbom; arm64's here."""
    for index in pushed:
        image = local_tag(LOCAL_NAME, index.variant, index.target, "linux/arm64")
        inside = copy_out(podman, image, SBOM_DIR, tmp_path / f"{index.target.name}-sbom")
        cdx = json.loads((inside / CDX_FILE).read_text())
        assert_valid(inside / SPDX_FILE, cdx)
        assert_complete(gather(image, podman), json.loads((inside / SPDX_FILE).read_text()), cdx)


def test_provenance_is_signed_and_names_the_pushed_image(
        podman: Engine, registry: Registry, policy: Path, key: Keyring, released: Released,
        pushed: list[Pushed], tmp_path: Path) -> None:
    verifier = make_key(tmp_path / "verifier", "verifier")  # a keyring that trusts nothing else
    verifier.gpg("--import", str(key.public_key))
    for index in pushed:
        for platform, digest in index.images.items():
            files = fetch(policy, registry, attached(digest, ATTESTATION_SUFFIX),
                          tmp_path / digest)
            document, signature = files[PROVENANCE_FILE], files[f"{PROVENANCE_FILE}.asc"]
            (tmp_path / "statement").write_bytes(document)
            (tmp_path / "statement.asc").write_bytes(signature)
            verified = verifier.gpg("--status-fd", "1", "--verify", str(tmp_path / "statement.asc"),
                                    str(tmp_path / "statement"))
            assert f"VALIDSIG {key.fingerprint}" in verified.stdout
            (tmp_path / "statement").write_bytes(document.replace(b"linux", b"LINUX"))
            tampered = verifier.gpg("--verify", str(tmp_path / "statement.asc"),
                                    str(tmp_path / "statement"), check=False)
            assert tampered.returncode != 0

            statement = json.loads(document)
            assert statement["_type"] == STATEMENT and statement["predicateType"] == SLSA
            assert statement["subject"] == [{"name": f"{registry.address}/{REPOSITORY}",
                                             "digest": {"sha256": digest.split(":")[1]}}]
            build = statement["predicate"]["buildDefinition"]
            assert build["buildType"] == BUILD_TYPE
            assert build["externalParameters"]["source"]["digest"] == {
                "gitCommit": released.revision}
            assert build["externalParameters"]["platform"] == platform
            base = index.variant.local_base(architecture(platform))
            assert build["internalParameters"]["buildArgs"] == {
                **index.variant.build_args, "BASE_IMAGE": base}
            (dependency,) = [d for d in build["resolvedDependencies"]
                             if d.get("name") == "BASE_IMAGE"]
            base_digest = podman("image", "inspect", "--format", "{{.Digest}}", base)
            assert dependency["digest"] == {"sha256": base_digest.split(":")[1]}
            assert statement["predicate"]["runDetails"]["builder"]["id"]

