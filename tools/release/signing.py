"""GnuPG: the release's key, and the two kinds of signature made with it.

Every manifest is signed by skopeo's "simple signing" (`--sign-by`), which
writes each signature where a registries.d file's `lookaside-staging` says;
users read them from the `lookaside` URL the signatures are published at.
Each provenance statement also gets a detached OpenPGP signature of its own,
so it can be checked apart from the registry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tools.release import ReleaseError

FINGERPRINT = re.compile(r"[0-9A-F]{40}")


def gpg(*args: str, data: bytes | None = None) -> bytes:
    if shutil.which("gpg") is None:
        raise ReleaseError("no gpg: apt-get install gnupg")
    result = subprocess.run(["gpg", "--batch", *args], input=data, capture_output=True,
                            timeout=120)
    if result.returncode != 0:
        raise ReleaseError(f"gpg {' '.join(args)} failed: {result.stderr.decode().strip()}")
    return result.stdout


def require_key(fingerprint: str) -> str:
    """The fingerprint, upper case, once GnuPG holds its secret key: no release is
    pushed unsigned, nor signed by a key named loosely (a short id can collide)."""
    wanted = fingerprint.upper()
    if not FINGERPRINT.fullmatch(wanted):
        raise ReleaseError(f"--sign-by takes a key's whole 40-digit fingerprint, not "
                           f"{fingerprint!r} (gpg --list-secret-keys --with-fingerprint)")
    try:
        listing = gpg("--with-colons", "--list-secret-keys", wanted).decode()
    except ReleaseError as error:
        raise ReleaseError(f"no secret key {wanted} in GnuPG's keyring: a release is never "
                           f"pushed without its signing key") from error
    if f"fpr:::::::::{wanted}:" not in listing:
        raise ReleaseError(f"{wanted} is not the fingerprint of a secret key in the keyring")
    return wanted


def passphrase_args(passphrase_file: Path | None) -> list[str]:
    if passphrase_file is None:
        return []
    return ["--pinentry-mode", "loopback", "--passphrase-file", str(passphrase_file)]


def detach_sign(data: bytes, fingerprint: str, passphrase_file: Path | None) -> bytes:
    """An ASCII-armoured detached signature of data."""
    return gpg("--armor", "--detach-sign", "--local-user", fingerprint,
               *passphrase_args(passphrase_file), data=data)


def registries_d(directory: Path, scope: str, staging: Path) -> Path:
    """A registries.d directory telling skopeo where to write the signatures of
    every image under scope (REGISTRY/REPOSITORY)."""
    directory.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    (directory / "flask-stack-release.yaml").write_text(
        f"docker:\n  {scope}:\n    lookaside-staging: {staging.resolve().as_uri()}\n")
    return directory
