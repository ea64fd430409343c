"""Debian packages from dpkg's records, Python distributions from their METADATA,
both read as the SBOM reads them (stack/build/pkgmeta.py)."""

from __future__ import annotations

import posixpath

from stack.build.pkgmeta import installed, metadata, stanzas
from tools.xray.facts import Distribution, Package
from tools.xray.filesystem import DPKG_STATUS, DPKG_STATUS_D, Filesystem


def dpkg_sources(fs: Filesystem) -> list[str]:
    """Where dpkg's records are: the status file, status.d (distroless), or both."""
    return ([DPKG_STATUS] if DPKG_STATUS in fs.contents else []) + (
        [DPKG_STATUS_D + "*"] if any(p.startswith(DPKG_STATUS_D) for p in fs.contents) else [])


def debian_packages(fs: Filesystem) -> tuple[list[Package], list[str]]:
    """Installed packages from dpkg's status file and status.d; also those in other states."""
    sources = [DPKG_STATUS] if DPKG_STATUS in fs.contents else []
    sources += sorted(p for p in fs.contents if p.startswith(DPKG_STATUS_D))
    packages: dict[tuple[str, str], Package] = {}
    others: list[str] = []
    for source in sources:
        label = "status" if source == DPKG_STATUS else source.removeprefix("/var/lib/dpkg/")
        for fields in stanzas(fs.text(source) or ""):
            if "Package" not in fields:
                continue
            if not installed(fields):
                others.append(f"{fields['Package']} ({fields['Status']})")
                continue
            key = (fields["Package"], fields.get("Architecture", ""))
            if key in packages:
                packages[key].sources.append(label)
            else:
                packages[key] = Package(key[0], fields.get("Version", "?"), key[1], [label])
    return sorted(packages.values(), key=lambda p: (p.name, p.architecture)), others


def python_distributions(fs: Filesystem) -> list[Distribution]:
    found = []
    for path in fs.contents:
        if path.endswith(".dist-info/METADATA"):
            headers = metadata(fs.text(path) or "")
            found.append(Distribution(headers.get("Name", "?"), headers.get("Version", "?"),
                                      posixpath.dirname(posixpath.dirname(path))))
    return sorted(found, key=lambda d: (d.name.lower(), d.location))
