"""Debian packages from dpkg's records, Python distributions from their METADATA."""

from __future__ import annotations

import email.parser
import posixpath
import re
from collections.abc import Iterator

from tools.xray.facts import Distribution, Package
from tools.xray.filesystem import DPKG_STATUS, DPKG_STATUS_D, Filesystem


def stanzas(text: str) -> Iterator[dict[str, str]]:
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation of a multi-line field
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "Package" in fields:
            yield fields


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
            status = fields.get("Status", "install ok installed")
            if status.split()[-1:] != ["installed"]:
                others.append(f"{fields['Package']} ({status})")
                continue
            key = (fields["Package"], fields.get("Architecture", ""))
            if key in packages:
                packages[key].sources.append(label)
            else:
                packages[key] = Package(key[0], fields.get("Version", "?"), key[1], [label])
    return sorted(packages.values(), key=lambda p: (p.name, p.architecture)), others


def python_distributions(fs: Filesystem) -> list[Distribution]:
    found = []
    parser = email.parser.HeaderParser()
    for path in fs.contents:
        if path.endswith(".dist-info/METADATA"):
            headers = parser.parsestr(fs.text(path) or "")
            found.append(Distribution(headers.get("Name", "?"), headers.get("Version", "?"),
                                      posixpath.dirname(posixpath.dirname(path))))
    return sorted(found, key=lambda d: (d.name.lower(), d.location))
