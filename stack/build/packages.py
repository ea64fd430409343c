"""Install hash-locked requirements into the image's virtual environment, as the
image keeps them: bytecode only, pure-Python packages zipped.

    python3 packages.py VENV LOCK [LOCK ...]
Every LOCK is installed together (--require-hashes, --no-deps), so a package two
locks pin differently stops the install, and `pip check` then proves each
requirement met. Libraries become bytecode without their test suites, C sources,
type stubs and what serves a part of theirs the stack never runs: half the
size. The pure-Python packages this install added go into one zip (43 % of
their size: the stack's in STACK_ZIP, an app's in APP_ZIP), which joins
sys.path through a .pth file of the same name. A
package stays a directory when something in it must be a real file: an
extension module (dlopen() needs a path) or data it opens by path (Supervisor
reads its version.txt). Data read through the import system zips too
(THROUGH_LOADER). Every *.dist-info
stays where it is, so importlib.metadata, pip and scanners still see each
distribution. The Dockerfile's builder runs it for the stack's lock, and
add.py for an app's.
"""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# Files a package may hold and still be zipped: bytecode, and type hints and
# notes that nothing reads at run time.
PORTABLE = (".pyc", ".pyi", ".md", "py.typed")
# What nothing reads at run time: sources, with the bytecode there (C sources
# beside a built extension; type stubs serve editors)...
SOURCES = ("*.py", "*.c", "*.h", "*.pyi")
# ...and what serves what this stack never runs: Supervisor's web UI and
# sample files (it has no control interface, and its configuration is ours).
UNSERVED = ("supervisor/ui", "supervisor/skel", "supervisor/scripts")
# Packages whose other files are read with pkgutil.get_data, which reads a zip
# as well as a directory: Werkzeug's debugger serves its shared/ files so.
THROUGH_LOADER = ("werkzeug",)
EXTENSION = ".so"
STACK_ZIP = "packages.zip"
APP_ZIP = "app-packages.zip"


class InstallError(RuntimeError):
    """The locks do not install together: pip has said why."""


def site_packages(venv: Path) -> Path:
    (path,) = venv.glob("lib/python3*/site-packages")
    return path


def pip(venv: Path, *args: str) -> int:
    """Debian's pip, acting on the venv (which has no pip of its own to ship)."""
    return subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"),
                           "--disable-pip-version-check", *args]).returncode


def install(venv: Path, locks: list[Path]) -> None:
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # Behind a TLS-intercepting proxy the build mounts the CA bundle as a secret.
    if Path("/run/secrets/ca_bundle").is_file():
        os.environ["PIP_CERT"] = "/run/secrets/ca_bundle"
    requirements = [arg for lock in locks for arg in ("--requirement", str(lock))]
    if pip(venv, "install", "--no-cache-dir", "--require-hashes", "--no-deps",
           *requirements) or pip(venv, "check"):
        raise InstallError(f"{' and '.join(map(str, locks))} do not install together")


def to_bytecode(site: Path) -> None:
    compileall.compile_dir(site, quiet=1, legacy=True, workers=0,
                           invalidation_mode=compileall.py_compile.PycInvalidationMode
                           .UNCHECKED_HASH)
    for pattern in SOURCES:
        for source in site.rglob(pattern):
            source.unlink()
    for directory in [*site.rglob("__pycache__"), *site.rglob("tests"),
                      *(site / path for path in UNSERVED)]:
        if directory.is_dir():
            shutil.rmtree(directory)


def zippable(package: Path) -> bool:
    files = [file for file in package.rglob("*") if file.is_file()]
    if package.name in THROUGH_LOADER:
        return not any(file.name.endswith(EXTENSION) for file in files)
    return all(file.name.endswith(PORTABLE) for file in files)


def zip_packages(site: Path, name: str, already: set[str]) -> list[str]:
    """Zip the pure-Python packages not in `already` into site/name; their names."""
    packages = sorted(path for path in site.iterdir()
                      if path.is_dir() and path.name not in already
                      and not path.name.endswith(".dist-info") and zippable(path))
    if not packages:
        return []
    with zipfile.ZipFile(site / name, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for package in packages:
            for path in sorted([package, *package.rglob("*")]):
                # Directories too: zipimport finds a namespace package (flask.sansio)
                # by its entry. A fixed date: the same packages make the same zip.
                entry_name = str(path.relative_to(site)) + ("/" if path.is_dir() else "")
                entry = zipfile.ZipInfo(entry_name, (1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, b"" if path.is_dir() else path.read_bytes())
            shutil.rmtree(package)
    (site / name).with_suffix(".pth").write_text(name + "\n")
    return [package.name for package in packages]


def main(venv: Path, zip_name: str, locks: list[Path]) -> None:
    already = set(os.listdir(site_packages(venv))) if venv.exists() else set()
    try:
        install(venv, locks)
    except InstallError as error:
        sys.exit(f"packages: {error}: a package they share must be pinned alike in both "
                 "(lock the app's with -c stack/requirements.txt)")
    site = site_packages(venv)
    to_bytecode(site)
    print(f"packages: zipped {', '.join(zip_packages(site, zip_name, already)) or 'nothing'}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: packages.py VENV LOCK [LOCK ...]")
    main(Path(sys.argv[1]), STACK_ZIP, [Path(arg) for arg in sys.argv[2:]])
