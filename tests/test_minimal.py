"""Image layer: the minimal image holds only what runs, and says what it holds."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.checks import assert_within_size_budget, log_text
from harness.engine import Engine
from harness.images import EXTERNAL_LOCKS, LOCKS, VARIANT, build_image, export, locked
from stack.build.packages import APP_ZIP, STACK_ZIP
from stack.build.rootfs import EXCLUDED_EXTENSIONS, EXCLUDED_STDLIB, UNUSABLE_STDLIB

pytestmark = [pytest.mark.image, pytest.mark.engine]

FORBIDDEN = re.compile(r"(^|/)(sh|bash|dash|busybox|apt|apt-get|dpkg|gcc|cc|g\+\+|pip3?|perl)$")

# Imports every standard-library module and submodule, but for scripts
# (__main__, antigravity opens a browser) and the test suite's innards;
# prints those that fail, each with the module it missed (or the error).
IMPORT_ALL = """
import importlib, json, pkgutil, sys
failed = {}
def attempt(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        failed[name] = error.name
    except BaseException as error:
        failed[name] = repr(error)
for name in sorted(sys.stdlib_module_names - {"__main__", "antigravity", "this"}):
    module = attempt(name)
    if module is None or name == "test":
        continue
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), name + ".",
                                      onerror=lambda name: failed.setdefault(name, "walk")):
        if not info.name.endswith("__main__"):
            attempt(info.name)
print(json.dumps(failed))
"""


class Files:
    """The image's file system, exported from a created (never started) container."""

    def __init__(self, tar: tarfile.TarFile, locks: tuple[Path, ...]) -> None:
        self.tar = tar
        self.locks = locks  # what the image's venv was installed from
        self.members = {os.path.normpath("/" + m.name): m for m in tar.getmembers()}

    def resolve(self, path: str) -> str:
        """The path with symlinks followed, component by component, inside the image."""
        resolved = "/"
        for part in Path(path).parts[1:]:
            candidate = str(Path(resolved) / part)
            member = self.members.get(candidate)
            while member is not None and member.issym():
                candidate = os.path.normpath(Path(candidate).parent / member.linkname)
                member = self.members.get(candidate)
            resolved = candidate
        return resolved

    def exists(self, path: str) -> bool:
        return self.resolve(path) in self.members

    def read(self, path: str) -> bytes:
        extracted = self.tar.extractfile(self.members[self.resolve(path)])
        assert extracted is not None
        return extracted.read()


@pytest.fixture(scope="module", params=["default", "external"])
def files(request: pytest.FixtureRequest, engine: Engine,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    """The default image's files, and those of a project built on the builder and
    runtime images (examples/external): both as minimal, both as well described."""
    image = request.getfixturevalue("image" if request.param == "default" else "external_image")
    archive = export(engine, image, tmp_path_factory.mktemp("export") / "rootfs.tar")
    with tarfile.open(archive) as tar:
        yield Files(tar, LOCKS if request.param == "default" else EXTERNAL_LOCKS)


def test_size_is_within_budget(engine: Engine, image: str) -> None:
    assert_within_size_budget(engine, image)


def test_no_shell_package_manager_compiler_or_setuid(files: Files) -> None:
    assert not [p for p, m in files.members.items()
                if (m.isfile() or m.issym()) and FORBIDDEN.search(p)]
    assert not [p for p, m in files.members.items() if m.mode & 0o6000]


def test_every_binary_and_library_has_its_package_entry(files: Files) -> None:
    claimed: dict[str, str] = {}
    packages = set()
    for path in files.members:
        if path.startswith("/var/lib/dpkg/status.d/") and path.endswith(".md5sums"):
            package = Path(path).name.removesuffix(".md5sums")
            packages.add(package)
            for line in files.read(path).decode().splitlines():
                digest, name = line.split(maxsplit=1)
                claimed["/" + name] = digest
    elves = [p for p, m in files.members.items()
             if m.isfile() and not p.startswith(("/opt/venv/", "/srv/"))
             and files.read(p)[:4] == b"\x7fELF"]
    assert len(elves) > 20
    for path in elves:
        assert path in claimed, f"{path} has no package entry"
        assert hashlib.md5(files.read(path)).hexdigest() == claimed[path], path
    for package in packages:
        stanza = files.read(f"/var/lib/dpkg/status.d/{package}").decode()
        assert f"Package: {package}\n" in stanza and "\nVersion: " in stanza
        assert files.exists(f"/usr/share/doc/{package}/copyright"), package
    assert {"nginx", "libc6", "libssl3t64", f"python{VARIANT.python}-minimal"} <= packages
    assert f"VERSION_CODENAME={VARIANT.suite}\n".encode() in files.read("/etc/os-release")


def test_every_python_distribution_has_its_dist_info(files: Files) -> None:
    site = f"/opt/venv/lib/python{VARIANT.python}/site-packages/"
    recorded: set[str] = set()
    for path in files.members:
        if path.startswith(site) and path.endswith(".dist-info/RECORD"):
            for line in files.read(path).decode().splitlines():
                recorded.add(line.split("/")[0].split(",")[0])
    top_level = {p[len(site):].split("/")[0] for p in files.members
                 if p.startswith(site) and p != site.rstrip("/")} - {STACK_ZIP, APP_ZIP}
    # The pure-Python packages are in the zips (the stack's, the app's), each
    # must be claimed all the same.
    zipped: dict[str, set[str]] = {}
    for name in (STACK_ZIP, APP_ZIP):
        with zipfile.ZipFile(io.BytesIO(files.read(site + name))) as archive:
            zipped[name] = {entry.split("/")[0] for entry in archive.namelist()}
    assert "gunicorn" in zipped[STACK_ZIP] and "flask" in zipped[APP_ZIP]
    unclaimed = {name for name in top_level.union(*zipped.values()) - recorded
                 if not name.endswith(".pth")}
    assert not unclaimed
    for name, version in locked(files.locks).items():
        dist_info = f"{site}{name.replace('-', '_')}-{version}.dist-info/METADATA"
        assert dist_info in files.members, dist_info


def test_werkzeugs_debugger_reads_its_files_from_the_zip(engine: Engine, image: str) -> None:
    """Werkzeug is zipped (stack/build/packages.py's THROUGH_LOADER) because what
    it reads beside its code it reads through the import system."""
    probe = ("import pkgutil, werkzeug; print(werkzeug.__file__); "
             "print(len(pkgutil.get_data('werkzeug.debug', 'shared/debugger.js')))")
    where, size = engine("run", "--rm", "--entrypoint", "python", image, "-c", probe,
                         timeout=60).splitlines()[-2:]
    assert f"/{APP_ZIP}/werkzeug/" in where
    assert int(size) > 1000


@pytest.fixture(scope="module")
def debian(engine: Engine, image: str) -> str:
    """The Dockerfile's Debian stage, which the minimal image's files come from."""
    return build_image(engine, f"{image}-debian", "debian")


def test_debian_packages_are_current(engine: Engine, debian: str) -> None:
    upgradable = engine("run", "--rm", "--entrypoint", "sh", debian, "-c",
                        "apt-get update -qq && apt list --upgradable 2>/dev/null", timeout=300)
    assert upgradable.splitlines()[1:] == [], "rebuild without cache to take the updates"


def test_standard_library_is_whole_but_for_the_documented_list(engine: Engine, image: str,
                                                               debian: str) -> None:
    full = json.loads(engine("run", "--rm", "--entrypoint", "python3", debian,
                             "-c", IMPORT_ALL, timeout=300))
    ours = json.loads(engine("run", "--rm", "--entrypoint", "python3", image,
                             "-c", IMPORT_ALL, timeout=300))
    excluded = {name.removesuffix(".py") for name in EXCLUDED_STDLIB}

    def documented(module: str) -> bool:
        top = module.split(".")[0]
        return (top in excluded or bool(EXCLUDED_EXTENSIONS.match(top))
                or module in UNUSABLE_STDLIB)

    # Every module the full install imports imports here too, unless documented.
    missing = [name for name in ours if name not in full]
    assert missing, "the documented list left nothing out?"
    assert [name for name in missing if not documented(name)] == []


def test_app_tracebacks_show_source_lines(run_container) -> None:
    server = run_container(env={"APP_MODULE": "broken:app"}, wait=False)
    assert server.wait_exit(30) == 1
    assert 'DATABASE_URL = os.environ["BROKEN_APP_DATABASE_URL"]' in log_text(server)


def test_debug_target_adds_a_shell(engine: Engine, image: str) -> None:
    debug = build_image(engine, f"{image}-debug", "debug")
    assert engine("run", "--rm", "--entrypoint", "sh", debug, "-c", "id -u; ls /srv") == (
        "10001\napp\nnginx\nstack\nsupervisord.conf")
    minimal = subprocess.run([engine.command, "run", "--rm", "--entrypoint", "sh", image],
                             capture_output=True, timeout=60)
    assert minimal.returncode != 0
