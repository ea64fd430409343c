"""Assemble the final image's root filesystem: only what runs, and metadata for all of it.

Run by the Dockerfile's `rootfs` stage with Debian's own Python:
    python3 rootfs.py TARGET [--scan DIR ...]
It copies Python (standard library compiled, without docstrings, into one
zip), Nginx, CA certificates and every shared library their ELF files load
(found by ldd, so nothing is hand-listed and each architecture derives its
own), then writes distroless-style package metadata (/var/lib/dpkg/status.d)
and copyright files for every Debian package a copied file belongs to. --scan
adds ELF files (e.g. a virtual environment's extension modules) whose
libraries must come too.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import marshal
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

STDLIB = Path(sysconfig.get_path("stdlib"))
DYNLOAD = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
STDLIB_ZIP = STDLIB.parent / f"python{sys.version_info.major}{sys.version_info.minor}.zip"

# Left out of the standard library, as no server uses them: test suites and
# test extension modules, GUI and REPL demos, pip's bootstrapper, terminal
# UIs (curses and readline; the 3.13 REPL still works, without line editing),
# dbm.ndbm's Berkeley DB (dbm's default is dbm.sqlite3) and help()'s topics
# (pydoc_data; pydoc says they are missing), as the docstrings are.
EXCLUDED_STDLIB = ("test", "idlelib", "tkinter", "turtle.py", "turtledemo", "ensurepip",
                   "lib2to3", "__phello__", "__hello__.py", "antigravity.py", "this.py",
                   "curses", "pydoc_data")
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# Still there, but they need what is left out: the 3.13 REPL's terminal
# console (Python uses its basic REPL instead) and dbm.ndbm.
UNUSABLE_STDLIB = ("dbm.ndbm", "_pyrepl._minimal_curses", "_pyrepl.curses", "_pyrepl.readline",
                   "_pyrepl.simple_interact", "_pyrepl.unix_console", "_pyrepl.unix_eventqueue")
EXCLUDED_EXTENSIONS = re.compile(r"(_test|_xxtest|xx|_ctypes_test|_curses|readline\b|_dbm\b)")
# Debian's additions beside the standard library, which point outside the image.
DEBIAN_EXTRAS = ("sitecustomize.py", "EXTERNALLY-MANAGED")

# Files besides ELF dependencies. os.py stays on disk: Python finds its
# prefix by it; everything else imports from the zip.
FILES = ("/etc/nginx/mime.types", "/etc/ssl/certs/ca-certificates.crt", "/etc/os-release",
         str(STDLIB / "os.py"), str(STDLIB / "LICENSE.txt"))
# glibc dlopen()s libgcc_s for thread cancellation and exit; ldd cannot see it.
DLOPENED = ("libgcc_s.so.1",)
# Generated at install time, not listed by the package that makes them.
GENERATED = {"/etc/ssl/certs/ca-certificates.crt": "ca-certificates"}

PASSWD = """root:x:0:0:root:/root:/usr/sbin/nologin
app:x:10001:10001:app:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = "root:x:0:\napp:x:10001:\nnogroup:x:65534:\n"


def canonical(path: str | Path) -> str:
    """The path with every directory symlink resolved, keeping the last component as is."""
    path = Path(path)
    return str(Path(os.path.realpath(path.parent)) / path.name)


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_dependencies(files: list[Path]) -> set[str]:
    """Shared libraries (and the loader) the ELF files load, by ldd."""
    found: set[str] = set()
    for file in files:
        output = subprocess.run(["ldd", str(file)], capture_output=True, text=True).stdout
        found.update(re.findall(r"(?:=>\s*)?(/\S+)\s+\(0x", output))
    return found


def library_path(name: str) -> str:
    match = re.search(rf"\s{re.escape(name)} \(.*\) => (\S+)",
                      subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout)
    if not match:
        sys.exit(f"rootfs: {name} not found")
    return match[1]


def copy(path: str, target: Path, copied: set[str]) -> None:
    """Copy a file or symlink (and what it points to), creating its directories."""
    path = canonical(path)
    if path in copied:
        return
    copied.add(path)
    destination = target / path.lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(path):
        link = os.readlink(path)
        destination.symlink_to(link)
        linked = Path(path).parent / link
        if not linked.is_dir():  # a directory's files are copied each on its own
            copy(str(linked), target, copied)
    else:
        shutil.copy2(path, destination)


def compile_stripped(path: Path) -> bytes:
    """A module's .pyc (unchecked hash, as compileall makes them) without its
    docstrings: what `python -OO` compiles, asserts kept. Docstrings serve help()
    and a server calls it never; they are an eighth of the standard library."""
    source = path.read_bytes()
    tree = ast.parse(source, str(path))
    for node in ast.walk(tree):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            if len(node.body) > 1:
                del node.body[0]
            else:
                node.body[0] = ast.copy_location(ast.Pass(), node.body[0])
    code = compile(tree, str(path), "exec", dont_inherit=True)
    flags = 0b01  # PEP 552: hash-based, not checked against the source
    return (importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little")
            + importlib.util.source_hash(source) + marshal.dumps(code))


def compile_stdlib(target: Path) -> None:
    """The standard library as bytecode in one zip, on Python's default sys.path.
    Compiled on every CPU: an arm64 build runs this under emulation, for minutes."""
    destination = target / str(STDLIB_ZIP).lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    sources = [source for source in sorted(STDLIB.rglob("*.py"))
               if source.relative_to(STDLIB).parts[0] not in EXCLUDED_STDLIB + DEBIAN_EXTRAS
               and "lib-dynload" not in str(source.relative_to(STDLIB))]
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            ProcessPoolExecutor() as pool:
        for source, code in zip(sources, pool.map(compile_stripped, sources, chunksize=32),
                                strict=True):
            relative = source.relative_to(STDLIB)
            entry = zipfile.ZipInfo(str(relative.with_suffix(".pyc")), (1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, code)


def package_owners() -> dict[str, str]:
    """Every path dpkg knows, canonicalised, to its package."""
    owners = {}
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        package = listing.stem.split(":")[0]
        for line in listing.read_text().splitlines():
            if line and line != "/.":
                owners[canonical(line)] = package
    return owners


def status_stanzas() -> dict[str, str]:
    stanzas = {}
    for stanza in Path("/var/lib/dpkg/status").read_text().split("\n\n"):
        match = re.search(r"^Package: (\S+)", stanza, re.M)
        if match and "Status: install ok installed" in stanza:
            stanzas[match[1]] = stanza.strip() + "\n"
    return stanzas


def copy_copyright(package: str, stanzas: dict[str, str], target: Path) -> None:
    """/usr/share/doc/PACKAGE/copyright, or, where Debian points that directory at a
    sibling from the same source (libgcc-s1 -> gcc-14-base) and the slim base image
    dropped the link, the sibling's, linked the same way."""
    docs = Path("/usr/share/doc")

    def source(name: str) -> str:
        match = re.search(r"^Source: (\S+)", stanzas[name], re.M)
        return match[1] if match else name

    owner = next((name for name in (package, *sorted(stanzas))
                  if source(name) == source(package) and (docs / name / "copyright").exists()),
                 None)
    if owner is None:
        sys.exit(f"rootfs: no copyright file for {package}")
    link = target / str(docs / package).lstrip("/")
    if owner != package and not (docs / package).exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(owner)
    elif (docs / package).is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.readlink(docs / package))
    copy(str(docs / owner / "copyright"), target, set())


def write_metadata(target: Path, copied: set[str], only_with: set[str] | None = None) -> None:
    """status.d entries, md5sums of the copied files, and copyright files, per package;
    with `only_with`, for the packages that own one of those paths alone (add.py)."""
    owners = package_owners()
    stanzas = status_stanzas()
    files_by_package: dict[str, list[str]] = {}
    for path in sorted(copied):
        package = GENERATED.get(path) or owners.get(path)
        if package:
            files_by_package.setdefault(package, []).append(path)
    if only_with is not None:
        files_by_package = {package: paths for package, paths in files_by_package.items()
                            if only_with.intersection(paths)}
    status_dir = target / "var/lib/dpkg/status.d"
    status_dir.mkdir(parents=True, exist_ok=True)
    for package, paths in sorted(files_by_package.items()):
        (status_dir / package).write_text(stanzas[package])
        sums = [f"{hashlib.md5(Path(p).read_bytes()).hexdigest()}  {p.lstrip('/')}"
                for p in paths if not os.path.islink(p)]
        (status_dir / f"{package}.md5sums").write_text("\n".join(sums) + "\n")
        copy_copyright(package, stanzas, target)
    print(f"rootfs: {len(files_by_package)} Debian packages: {' '.join(sorted(files_by_package))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--scan", type=Path, action="append", default=[],
                        help="a directory whose ELF files' libraries must be copied too")
    args = parser.parse_args()
    target: Path = args.target
    copied: set[str] = set()
    target.mkdir(parents=True, exist_ok=True)

    # The merged-/usr links (/lib -> usr/lib, ...) that loader paths go through.
    for entry in Path("/").iterdir():
        if entry.is_symlink() and os.readlink(entry).startswith("usr/"):
            (target / entry.name).symlink_to(os.readlink(entry))

    python = os.path.realpath(sys.executable)
    nginx = shutil.which("nginx") or sys.exit("rootfs: no nginx")
    copy(python, target, copied)
    (target / "usr/bin/python3").symlink_to(Path(python).name)
    copy(nginx, target, copied)
    extensions = [so for so in DYNLOAD.glob("*.so") if not EXCLUDED_EXTENSIONS.match(so.name)]
    for path in (*FILES, *map(str, extensions)):
        copy(path, target, copied)
    compile_stdlib(target)

    elves = [Path(python), Path(nginx), *extensions]
    for directory in args.scan:
        elves += [path for path in directory.rglob("*") if path.is_file() and is_elf(path)]
    for library in sorted(elf_dependencies(elves)) + [library_path(n) for n in DLOPENED]:
        copy(library, target, copied)

    write_metadata(target, copied)
    (target / "etc/passwd").write_text(PASSWD)
    (target / "etc/group").write_text(GROUP)
    (target / "tmp").mkdir(mode=0o1777)
    (target / "tmp").chmod(0o1777)


if __name__ == "__main__":
    main()
