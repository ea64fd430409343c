"""Package facts from an image's own metadata, read one way for every reader:
the SBOM (sbom.py, at build time, with Debian's Python alone) and the image
report (tools/xray). Standard library only.

- Debian: deb822 stanzas (dpkg's status file and status.d entries), md5sums,
  and DEP-5 ("machine-readable") copyright files for licenses.
- Python: a dist-info's METADATA (name, version, license) and RECORD (its
  files' sha256).
- PURLs for both, as the purl specification spells them.
"""

from __future__ import annotations

import base64
import csv
import email.message
import email.parser
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

DEP5_FORMAT = "copyright-format/1.0"  # the Format: URL of a machine-readable copyright file

# SPDX license identifiers the DEP-5 short names and Python's metadata map to
# (spdx.org/licenses). A name outside them becomes a LicenseRef with its text.
SPDX_IDS = frozenset((
    "0BSD", "AFL-2.1", "Apache-1.1", "Apache-2.0", "Artistic-1.0", "Artistic-1.0-Perl",
    "Artistic-2.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause", "BSL-1.0",
    "bzip2-1.0.6", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0", "curl",
    "FSFAP", "FSFUL", "FSFULLR", "GFDL-1.2-or-later", "GFDL-1.3-or-later", "GPL-1.0-only",
    "GPL-1.0-or-later", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "HPND", "ISC", "LGPL-2.0-only", "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later",
    "LGPL-3.0-only", "LGPL-3.0-or-later", "libpng-2.0", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0",
    "OpenSSL", "PSF-2.0", "Python-2.0", "Unicode-3.0", "Unicode-DFS-2016", "Unlicense", "W3C",
    "X11", "Zlib", "ZPL-2.1",
))
_SPDX_BY_LOWER = {name.lower(): name for name in SPDX_IDS}
# DEP-5 short names that are not spelled as SPDX's (the GNU ones by rule, below).
DEP5_NAMES = {"expat": "MIT", "artistic": "Artistic-1.0", "psf-2": "PSF-2.0",
              "python-2": "Python-2.0", "bsd-2-clause": "BSD-2-Clause",
              "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
              "zlib": "Zlib", "apache-2": "Apache-2.0", "mpl-2": "MPL-2.0"}
GNU = re.compile(r"(a?l?gpl|gfdl)-?(\d)(?:\.(\d))?(\+)?", re.I)
# Trove classifiers that name one license; "BSD License" and the like name a family
# and stay LicenseRefs, with the distribution's license file as their text.
CLASSIFIERS = {"MIT License": "MIT", "ISC License (ISCL)": "ISC",
               "Apache Software License 2.0": "Apache-2.0",
               "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
               "Python Software Foundation License": "PSF-2.0",
               "The Unlicense (Unlicense)": "Unlicense", "zlib/libpng License": "Zlib"}


# --- Debian


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs; a field's value is its first line, stripped, and its
    continuation lines after a newline (a lone " ." is an empty line)."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None:
                    more = line.strip()
                    fields[key] += "\n" + ("" if more == "." else more)
                continue
            name, sep, value = line.partition(":")
            if sep and not line.startswith("#"):
                key = name.strip()
                fields[key] = value.strip()
        if fields:
            yield fields


def installed(stanza: dict[str, str]) -> bool:
    """Whether dpkg has the package installed; status.d entries have no Status."""
    return stanza.get("Status", "install ok installed").split()[-1:] == ["installed"]


def first_line(value: str) -> str:
    return value.split("\n", 1)[0]


def md5sums(text: str) -> dict[str, str]:
    """An md5sums file: each path (absolute) to its md5."""
    found = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        if path:
            found["/" + path.lstrip("/")] = digest
    return found


# --- Python


def metadata(text: str) -> email.message.Message:
    """A METADATA file's headers (its body, the long description, is not read)."""
    return email.parser.HeaderParser().parsestr(text.split("\n\n", 1)[0])


def record(text: str) -> dict[str, str]:
    """A RECORD file: each path (relative to site-packages) to its sha256 in hex;
    entries without a hash (RECORD itself, compiled files) are left out."""
    found = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            encoded = row[1].removeprefix("sha256=")
            digest = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            found[row[0]] = digest.hex()
    return found


def normalized(name: str) -> str:
    """A distribution's name as PEP 503 compares names."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- licenses


@dataclass
class Licenses:
    """The LicenseRefs a document uses, each with the text it stands for; the same
    name with another text gets another id."""

    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, text)

    def ref(self, name: str, text: str) -> str:
        base = "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:60] or "unnamed")
        candidate, n = base, 1
        while candidate in self.refs and self.refs[candidate][1] != text:
            n += 1
            candidate = f"{base}-{n}"
        self.refs[candidate] = (name, text)
        return candidate


def spdx_id(name: str) -> str | None:
    """The SPDX id for an SPDX id in any case, or a DEP-5 short name; else None."""
    lowered = name.strip().lower()
    if lowered in _SPDX_BY_LOWER:
        return _SPDX_BY_LOWER[lowered]
    if lowered in DEP5_NAMES:
        return DEP5_NAMES[lowered]
    match = GNU.fullmatch(lowered)
    if match:
        family, major, minor, later = match.groups()
        guess = f"{family.upper()}-{major}.{minor or '0'}-{'or-later' if later else 'only'}"
        return guess if guess in SPDX_IDS else None
    return None


def expression(text: str, licenses: Licenses, texts: dict[str, str], fallback: str) -> str:
    """A DEP-5 License: line ("GPL-2+ or Artistic", "LGPL-2.1+ and SunPro") as an
    SPDX expression: each name that maps to an SPDX id becomes it, any other (a
    name with an exception, a name of Debian's own) a LicenseRef with its text:
    its stand-alone License paragraph's, else `fallback`."""
    terms = re.split(r",?\s+(and|or)\s+", text.strip(), flags=re.I)
    parts = []
    for index, term in enumerate(terms):
        if index % 2:
            parts.append(term.upper())
        else:
            parts.append(spdx_id(term) or licenses.ref(term, texts.get(term.lower()) or fallback))
    joined = " ".join(parts)
    return f"({joined})" if len(parts) > 1 else joined


SHORT_NAME = re.compile(r"[\w.+-]+(\s+with\s+[\w.+ -]+?\s+exception)?"
                        r"(,?\s+(and|or)\s+[\w.+-]+(\s+with\s+[\w.+ -]+?\s+exception)?)*",
                        re.I)


def debian_license(copyright_text: str, source: str, licenses: Licenses) -> str:
    """A package's license from its copyright file. A DEP-5 file gives each Files
    paragraph's License, joined with AND (each part of the package is under its
    own); a file in free form, which no program can read reliably, is one
    LicenseRef whose text is the whole file (`source` names it)."""
    paragraphs = list(stanzas(copyright_text))
    if not paragraphs or DEP5_FORMAT not in paragraphs[0].get("Format", ""):
        return licenses.ref(f"{source}-copyright", copyright_text)
    # Stand-alone License paragraphs hold the texts the short names stand for.
    texts = {first_line(p["License"]).lower(): p["License"] for p in paragraphs
             if "License" in p and "Files" not in p and "\n" in p["License"]}
    found: list[str] = []
    for paragraph in paragraphs:
        if "Files" not in paragraph or "License" not in paragraph:
            continue
        line = first_line(paragraph["License"])
        if SHORT_NAME.fullmatch(line):
            part = expression(line, licenses, texts, paragraph["License"])
        else:  # the text itself where the short name belongs
            part = licenses.ref(f"{source}-{len(licenses.refs) + 1}", paragraph["License"])
        if part not in found:
            found.append(part)
    if not found:
        return licenses.ref(f"{source}-copyright", copyright_text)
    return " AND ".join(found)


def python_license(meta: email.message.Message, license_files: dict[str, str],
                   licenses: Licenses) -> str:
    """A distribution's license: License-Expression (PEP 639) where every id in
    it is known, else License when it is one SPDX id, else its license
    classifiers; any other text a LicenseRef whose text is the distribution's
    own license files (or the field itself)."""
    name = meta.get("Name", "?")
    text = "\n\n".join(license_files.values())
    declared = (meta.get("License-Expression") or "").strip()
    if declared:
        ids = [t for t in re.split(r"[\s()]+", declared) if t and t not in ("AND", "OR", "WITH")]
        if all(spdx_id(t) == t for t in ids):
            return declared
        return licenses.ref(f"{name}-{declared}", text or declared)
    field_value = (meta.get("License") or "").strip()
    if field_value and spdx_id(field_value):
        return spdx_id(field_value) or field_value
    classified = [c.rsplit(" :: ", 1)[-1] for c in meta.get_all("Classifier") or []
                  if c.startswith("License :: ")]
    terms = [CLASSIFIERS.get(c) or licenses.ref(f"{name}-{c}", text or c) for c in classified]
    if not terms and (field_value or text):
        terms = [licenses.ref(f"{name}-license", text or field_value)]
    if not terms:
        return "NOASSERTION"
    return " AND ".join(dict.fromkeys(terms))


# --- identities


def os_release(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip().strip('"')
    return found


def distro(release: dict[str, str]) -> str:
    """The purl `distro` qualifier: debian-13 for trixie; Debian testing (forky)
    has no VERSION_ID yet, so its codename: debian-forky."""
    version = release.get("VERSION_ID") or release.get("VERSION_CODENAME", "unknown")
    return f"{release.get('ID', 'debian')}-{version}"


def deb_purl(name: str, version: str, architecture: str, distro_id: str) -> str:
    """As the purl specification spells it: name and version percent-encoded
    (libstdc++6 is libstdc%2B%2B6), an epoch's colon kept."""
    return (f"pkg:deb/debian/{quote(name, safe='')}@{quote(version, safe=':')}"
            f"?arch={architecture}&distro={distro_id}")


def pypi_purl(name: str, version: str) -> str:
    """PyPI's names in lower case, `_` as `-`, as the purl specification has them."""
    return f"pkg:pypi/{quote(name.lower().replace('_', '-'), safe='')}@{quote(version, safe=':')}"


def digests(data: bytes) -> dict[str, str]:
    """A file's SHA-1 (which SPDX requires of every file) and SHA-256."""
    return {"SHA1": hashlib.sha1(data).hexdigest(), "SHA256": hashlib.sha256(data).hexdigest()}
