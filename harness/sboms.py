"""What every check of an SBOM asserts: valid by its format's own library, and
listing exactly the packages xray finds in the image. Plain asserts, rewritten
by pytest (tests/conftest.py) so a failure shows its values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from stack.build import pkgmeta
from tools.xray.facts import Facts


def purls(spdx: dict[str, Any], cdx: dict[str, Any]) -> dict[str, list[PackageURL]]:
    """Each document's components by their PURLs."""
    listed = {"spdx": [ref["referenceLocator"] for package in spdx["packages"]
                       for ref in package.get("externalRefs", [])
                       if ref["referenceType"] == "purl"],
              "cyclonedx": [component["purl"] for component in cdx["components"]
                            if component["type"] != "operating-system"]}
    return {kind: [PackageURL.from_string(purl) for purl in found]
            for kind, found in listed.items()}


def assert_valid(spdx_path: Path, cdx: dict[str, Any]) -> None:
    """SPDX 2.3 by spdx-tools, CycloneDX 1.6 by cyclonedx-python-lib's schema."""
    assert json.loads(spdx_path.read_text())["spdxVersion"] == "SPDX-2.3"
    assert validate_full_spdx_document(parse_file(str(spdx_path))) == []
    assert cdx["specVersion"] == "1.6"
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(cdx))
    assert error is None, error


def assert_complete(facts: Facts, spdx: dict[str, Any], cdx: dict[str, Any]) -> None:
    """Every package xray finds in the image is in each document with the same
    version (and architecture), and nothing else is."""
    debian = {(p.name, p.version, p.architecture) for p in facts.packages}
    python = {(pkgmeta.normalized(d.name), d.version) for d in facts.distributions}
    assert debian and python
    # Besides, the image itself and its operating system, without a PURL.
    assert [p["primaryPackagePurpose"] for p in spdx["packages"][:2]] == [
        "CONTAINER", "OPERATING-SYSTEM"]
    assert len(spdx["packages"]) == len(debian) + len(python) + 2
    assert [c["type"] for c in cdx["components"]].count("operating-system") == 1
    assert len(cdx["components"]) == len(debian) + len(python) + 1
    for kind, listed in purls(spdx, cdx).items():
        assert {(p.name, p.version, p.qualifiers["arch"]) for p in listed
                if p.type == "deb"} == debian, kind
        assert {(pkgmeta.normalized(p.name), p.version) for p in listed
                if p.type == "pypi"} == python, kind
        assert {p.type for p in listed} == {"deb", "pypi"}, kind
