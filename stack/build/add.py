#!/usr/bin/python3
"""flask-stack-add: in the builder image, add an app's dependencies for the runtime image.

    flask-stack-add [--packages "PKG ..."] REQUIREMENTS [OUT]
It installs the hash-locked REQUIREMENTS into the stack's virtual environment
beside the stack's own lock (a package both pin differently stops it, with
pip's message), as the image keeps its own (packages.py), then writes to OUT
(default /added) everything the runtime image must gain:
- the files the install added to the venv (bytecode, the zip of pure-Python
  packages, extension modules, each distribution's dist-info);
- the shared libraries the new ELF files load that the runtime lacks (ldd, as
  for the stack), and every file of the extra Debian PACKAGES (libraries a
  wheel does not bundle, such as libpq5 for psycopg without its binary wheel);
- a dpkg status.d entry, md5sums and copyright file for each Debian package
  those files come from;
- the image's SBOMs (sbom.py), which list the app's packages beside the stack's.
`COPY --from=BUILD /added/ /` onto the runtime image then adds them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import packages
import rootfs
import sbom

VENV = Path("/opt/venv")
STACK_LOCK = Path("/opt/stack/requirements.txt")
RUNTIME_ROOT = Path("/rootfs")  # the runtime image's root filesystem, less the venv


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and symlink below root: its size and modification time."""
    found = {}
    for path in root.rglob("*"):
        if path.is_symlink() or path.is_file():
            stat = path.lstat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return found


def installed() -> set[str]:
    listing = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True,
                             text=True, check=True).stdout
    return set(listing.split())


def install_packages(packages: list[str]) -> list[str]:
    """apt-get install the extra Debian packages; every file of each package that came
    (a name apt resolves, such as libmagic1 for libmagic1t64, and their dependencies)."""
    if not packages:
        return []
    before = installed()
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                   check=True)
    files = []
    for package in sorted(installed() - before):
        listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                                 check=True).stdout.splitlines()
        files += [path for path in listing if os.path.isfile(path) or os.path.islink(path)]
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=Path("/added"))
    parser.add_argument("--packages", default=os.environ.get("EXTRA_PACKAGES", ""),
                        help="extra Debian packages, space-separated (default: $EXTRA_PACKAGES)")
    args = parser.parse_args()
    out: Path = args.out

    before = snapshot(VENV)
    packages.main(VENV, packages.APP_ZIP, [STACK_LOCK, args.requirements])
    after = snapshot(VENV)
    changed = sorted(path for path, stat in after.items() if before.get(path) != stat)
    for path in changed:
        destination = out / path.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination, follow_symlinks=False)

    # What the runtime already has: the copies of these files are the runtime's.
    runtime = {"/" + str(path.relative_to(RUNTIME_ROOT)) for path in RUNTIME_ROOT.rglob("*")
               if path.is_file() or path.is_symlink()}
    extra = install_packages(args.packages.split())
    elves = [Path(path) for path in changed + extra if rootfs.is_elf(Path(path))]
    added: set[str] = set()
    for path in extra + sorted(rootfs.elf_dependencies(elves)):
        if rootfs.canonical(path) not in runtime:
            rootfs.copy(path, out, added)
    added -= runtime
    rootfs.write_metadata(out, runtime | added, only_with=added)
    # The runtime's files, then the venv as the install left it, then what is added.
    sbom.write(out, "flask-stack app", [(RUNTIME_ROOT, "/"), (VENV, str(VENV)), (out, "/")])
    print(f"flask-stack-add: {len(changed)} files in the venv, {len(added)} from Debian, "
          f"into {out}")


if __name__ == "__main__":
    main()
