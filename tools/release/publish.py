"""Pushing with skopeo: each image index, signed under each of its tags, and the
artifacts beside an image's digest.

Podman 4.3 pushes a multi-architecture list either as a Docker manifest list
or, with `--format oci`, as an OCI index whose images it converts to OCI, which
drops their HEALTHCHECK. So the index is written here: an OCI image index whose
entries are the images exactly as built (Docker v2 schema 2 manifests, which
keep it), pushed from a `dir:` copy with `--preserve-digests`, so every tag of
it names the same digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tools.release import ReleaseError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"  # an artifact's config: no image to run
TITLE = "org.opencontainers.image.title"
DIR_VERSION = "Directory Transport Version: 1.1\n"
# The release copies only what it made itself: its policy accepts those two sources.
POLICY = {"default": [{"type": "reject"}],
          "transports": {"dir": {"": [{"type": "insecureAcceptAnything"}]},
                         "containers-storage": {"": [{"type": "insecureAcceptAnything"}]}}}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def skopeo(*args: str, timeout: float = 1800) -> str:
    if shutil.which("skopeo") is None:
        raise ReleaseError("no skopeo: apt-get install skopeo")
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ReleaseError(f"skopeo {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Registry:
    """Where and how to push: every copy is signed by the release's key."""

    address: str  # HOST:PORT
    repository: str
    sign_by: str
    registries_d: Path
    signatures: Path  # the registries.d's lookaside-staging
    policy: Path
    tls_verify: bool
    passphrase_file: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.address}/{self.repository}"

    def carry_signatures(self, source: Path) -> None:
        """Put the signatures already made for the source's manifests (another tag's)
        into the dir: copy, where skopeo takes them along: it writes a manifest's
        whole list of signatures, so a copy without them would drop them."""
        for stale in source.glob("*signature-*"):
            stale.unlink()
        manifests = {"": source / "manifest.json"}
        manifests |= {path.name.removesuffix(".manifest.json") + ".": path
                      for path in source.glob("*.manifest.json")}
        for prefix, manifest in manifests.items():
            hexdigest = digest_of(manifest.read_bytes()).removeprefix("sha256:")
            stored = self.signatures / f"{self.repository}@sha256={hexdigest}"
            for signature in sorted(stored.glob("signature-*")):
                shutil.copyfile(signature, source / f"{prefix}{signature.name}")

    def push(self, source: Path, tag: str, every_image: bool = False) -> None:
        """A dir: copy to the tag, its manifests as they are, each one signed (beside
        the signatures it already has, for other tags)."""
        self.carry_signatures(source)
        signing = ["--sign-by", self.sign_by]
        if self.passphrase_file:
            signing += ["--sign-passphrase-file", str(self.passphrase_file)]
        skopeo("--policy", str(self.policy), "--registries.d", str(self.registries_d),
               "copy", "--quiet", "--preserve-digests", *(["--all"] if every_image else []),
               *signing, f"--dest-tls-verify={str(self.tls_verify).lower()}",
               f"dir:{source}", f"docker://{self.name}:{tag}")


def write_policy(path: Path) -> Path:
    path.write_text(json.dumps(POLICY, indent=1) + "\n")
    return path


def export(image_id: str, directory: Path, policy: Path) -> Descriptor:
    """A local image as a dir: copy (layers gzip'd, as a registry stores them); its
    manifest's descriptor."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    skopeo("--policy", str(policy), "copy", "--quiet", "--dest-compress",
           f"containers-storage:{image_id}", f"dir:{directory}")
    manifest = (directory / "manifest.json").read_bytes()
    return Descriptor(json.loads(manifest)["mediaType"], digest_of(manifest), len(manifest))


def index(images: dict[str, tuple[Path, Descriptor]], directory: Path) -> Descriptor:
    """One dir: copy holding an OCI image index over the exported images, by platform."""
    directory.mkdir(parents=True)
    (directory / "version").write_text(DIR_VERSION)
    entries = []
    for platform, (exported, descriptor) in images.items():
        for blob in exported.iterdir():
            if blob.name not in ("manifest.json", "version"):
                shutil.copyfile(blob, directory / blob.name)
        hexdigest = descriptor.digest.removeprefix("sha256:")
        shutil.copyfile(exported / "manifest.json", directory / f"{hexdigest}.manifest.json")
        os_name, architecture = platform.split("/")
        entries.append({**descriptor.json(),
                        "platform": {"architecture": architecture, "os": os_name}})
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                      indent=1).encode()
    (directory / "manifest.json").write_bytes(data)
    return Descriptor(OCI_INDEX, digest_of(data), len(data))


def artifact(directory: Path, artifact_type: str, subject: Descriptor,
             files: list[tuple[str, str, bytes]]) -> Descriptor:
    """A dir: copy of an OCI artifact: (title, media type, content) layers, an empty
    config, and its subject, the image it is about (registries that implement the
    referrers API list it there; the tag names it everywhere else)."""
    directory.mkdir(parents=True)
    (directory / "version").write_text(DIR_VERSION)

    def blob(media_type: str, data: bytes, title: str | None = None) -> dict[str, object]:
        (directory / digest_of(data).removeprefix("sha256:")).write_bytes(data)
        found = Descriptor(media_type, digest_of(data), len(data)).json()
        return {**found, "annotations": {TITLE: title}} if title else found

    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": blob(EMPTY, b"{}"),
                "layers": [blob(media_type, data, title) for title, media_type, data in files],
                "subject": subject.json()}
    data = json.dumps(manifest, indent=1).encode()
    (directory / "manifest.json").write_bytes(data)
    return Descriptor(OCI_MANIFEST, digest_of(data), len(data))

