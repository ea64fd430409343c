"""Pack a virtual environment's pure-Python packages into one zip: 43 % of their size.

Run by the Dockerfile's venv stage once the packages are bytecode only:
    python3 zip_packages.py SITE_PACKAGES
A package stays a directory when something in it must be a real file: an
extension module (dlopen() needs a path) or data it opens by path (Supervisor
reads its version.txt; Werkzeug's debugger serves its files). The zip joins
sys.path through a .pth file. Every *.dist-info stays where it is, so
importlib.metadata, pip and scanners still see each distribution.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

ZIP_NAME = "packages.zip"
# Files a package may hold and still be zipped: bytecode, and type hints and
# notes that nothing reads at run time.
PORTABLE = (".pyc", ".pyi", ".md", "py.typed")


def zippable(package: Path) -> bool:
    return all(file.name.endswith(PORTABLE) for file in package.rglob("*") if file.is_file())


def main() -> None:
    site_packages = Path(sys.argv[1])
    packages = sorted(path for path in site_packages.iterdir()
                      if path.is_dir() and not path.name.endswith(".dist-info")
                      and zippable(path))
    with zipfile.ZipFile(site_packages / ZIP_NAME, "w", zipfile.ZIP_DEFLATED,
                         compresslevel=9) as archive:
        for package in packages:
            for path in sorted([package, *package.rglob("*")]):
                # Directories too: zipimport finds a namespace package (flask.sansio)
                # by its entry. A fixed date: the same packages make the same zip.
                name = str(path.relative_to(site_packages)) + ("/" if path.is_dir() else "")
                entry = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, b"" if path.is_dir() else path.read_bytes())
            shutil.rmtree(package)
    (site_packages / "packages.pth").write_text(ZIP_NAME + "\n")
    print(f"zipped {', '.join(p.name for p in packages)}")


if __name__ == "__main__":
    main()
