"""Image layer: every image's SBOMs, SPDX 2.3 and CycloneDX 1.6, made at build time.

Each is valid by its format's own library (spdx-tools, cyclonedx-python-lib),
and lists exactly what xray finds in the image: every Debian package and
Python distribution, with the same version, and nothing else. Their PURLs,
licenses and file checksums are checked against the image's own files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from harness.engine import Engine
from harness.images import EXTERNAL_LOCKS, IMAGE_TAG, VARIANT, build_image, export, locked
from harness.sboms import assert_complete, assert_valid, purls
from stack.build import pkgmeta
from stack.build.sbom import CDX_FILE, SBOM_DIR, SPDX_FILE
from tools.xray.facts import Facts
from tools.xray.gather import gather

# How scanners name each suite's release: its VERSION_ID, or for Debian testing,
# which has none yet, its codename.
DISTRO_VERSION = {"trixie": "13", "forky": "forky"}

pytestmark = [pytest.mark.image, pytest.mark.timeout(600)]

# Every image the Dockerfile ships, and one a project makes with flask-stack-add.
IMAGES = ("default", "runtime", "builder", "debug", "external")


@dataclass
class Sboms:
    name: str
    spdx_path: Path
    spdx: dict[str, Any]
    cdx: dict[str, Any]
    facts: Facts
    files: dict[str, tarfile.TarInfo]  # the image's, by absolute path
    tar: tarfile.TarFile

    def read(self, path: str) -> bytes:
        """A file of the image, through its symlinks."""
        member = self.files[path]
        while member.issym():
            path = os.path.normpath(os.path.join(os.path.dirname(path), member.linkname))
            member = self.files[path]
        reader = self.tar.extractfile(member)
        assert reader is not None
        return reader.read()


@pytest.fixture(scope="module", params=IMAGES)
def sboms(request: pytest.FixtureRequest, engine: Engine,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sboms]:
    name = request.param
    if name == "default":
        image = request.getfixturevalue("image")
    elif name in ("runtime", "builder"):
        builder, runtime = request.getfixturevalue("stack_images")
        image = builder if name == "builder" else runtime
    elif name == "debug":
        image = build_image(engine, f"{IMAGE_TAG}-debug", "debug")
    else:
        image = request.getfixturevalue("external_image")
    directory = tmp_path_factory.mktemp(f"sbom-{name}")
    with tarfile.open(export(engine, image, directory / "rootfs.tar")) as tar:
        files = {os.path.normpath("/" + m.name): m for m in tar.getmembers()}
        found = Sboms(name, directory / SPDX_FILE, {}, {}, gather(image, engine), files, tar)
        found.spdx_path.write_bytes(found.read(f"{SBOM_DIR}/{SPDX_FILE}"))
        found.spdx = json.loads(found.spdx_path.read_text())
        found.cdx = json.loads(found.read(f"{SBOM_DIR}/{CDX_FILE}"))
        yield found


def test_both_are_valid_by_their_formats_libraries(sboms: Sboms) -> None:
    assert_valid(sboms.spdx_path, sboms.cdx)


def test_every_package_xray_finds_and_nothing_else(sboms: Sboms) -> None:
    assert_complete(sboms.facts, sboms.spdx, sboms.cdx)


def test_purls_are_canonical_and_name_the_distribution(sboms: Sboms) -> None:
    release = pkgmeta.os_release(sboms.read("/etc/os-release").decode())
    written = [component["purl"] for component in sboms.cdx["components"] if "purl" in component]
    assert all(PackageURL.from_string(purl).to_string() == purl for purl in written)
    for listed in purls(sboms.spdx, sboms.cdx).values():
        for purl in listed:
            if purl.type == "deb":
                assert purl.namespace == "debian"
                assert purl.qualifiers["distro"] == f"debian-{DISTRO_VERSION[VARIANT.suite]}"
    (system,) = [c for c in sboms.cdx["components"] if c["type"] == "operating-system"]
    assert (system["name"], system["version"]) == ("debian", DISTRO_VERSION[VARIANT.suite])
    assert release.get("VERSION_ID", release["VERSION_CODENAME"]) == DISTRO_VERSION[VARIANT.suite]


@pytest.mark.parametrize("sboms", ["external"], indirect=True)
def test_an_image_made_with_flask_stack_add_lists_the_users_packages(sboms: Sboms) -> None:
    listed = purls(sboms.spdx, sboms.cdx)
    python = {pkgmeta.normalized(p.name): p.version for p in listed["spdx"] if p.type == "pypi"}
    assert {pkgmeta.normalized(n): v for n, v in locked(EXTERNAL_LOCKS).items()}.items() <= (
        python.items())
    assert {"libmagic1t64", "libmagic-mgc"} <= {p.name for p in listed["cyclonedx"]}


def test_every_component_has_a_license(sboms: Sboms) -> None:
    refs = {info["licenseId"]: info for info in sboms.spdx["hasExtractedLicensingInfos"]}
    for package in sboms.spdx["packages"][2:]:  # after the image and its operating system
        declared = package["licenseDeclared"]
        assert declared != "NOASSERTION", package["name"]
        for term in declared.replace("(", " ").replace(")", " ").split():
            if term.startswith("LicenseRef-"):
                assert refs[term]["extractedText"].strip(), term
    for component in sboms.cdx["components"][1:]:
        (choice,) = component["licenses"]
        assert choice["expression"], component["name"]


def test_a_debian_license_is_its_dep5_copyright_files(sboms: Sboms) -> None:
    """nginx's copyright file is machine-readable: its License fields are its license."""
    nginx = next(p for p in sboms.spdx["packages"] if p["name"] == "nginx")
    copyright_text = sboms.read("/usr/share/doc/nginx/copyright").decode()
    licenses = {pkgmeta.first_line(stanza["License"]) for stanza in pkgmeta.stanzas(
        copyright_text) if "Files" in stanza}
    assert "BSD-2-clause" in licenses
    assert "BSD-2-Clause" in nginx["licenseDeclared"].split(" AND ")


def test_file_checksums_are_the_images_files(sboms: Sboms) -> None:
    algorithms = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "MD5": hashlib.md5}
    listed = sboms.spdx["files"]
    assert listed
    for file in listed:
        data = sboms.read(file["fileName"].removeprefix("."))
        for checksum in file["checksums"]:
            assert algorithms[checksum["algorithm"]](data).hexdigest() == (
                checksum["checksumValue"]), file["fileName"]
    cdx = {file["name"]: {h["alg"]: h["content"] for h in file["hashes"]}
           for component in sboms.cdx["components"] for file in component.get("components", [])}
    spdx = {file["fileName"].removeprefix("."): {c["algorithm"]: c["checksumValue"]
                                                 for c in file["checksums"]} for file in listed}
    assert {path: hashes["SHA-1"] for path, hashes in cdx.items()} == {
        path: hashes["SHA1"] for path, hashes in spdx.items()}


# The builder keeps dpkg's whole database, whose md5sums name files the slim base left out.
@pytest.mark.parametrize("sboms", [n for n in IMAGES if n != "builder"], indirect=True)
def test_debian_files_are_those_the_md5sums_list(sboms: Sboms) -> None:
    """The metadata's own checksums: every regular file a status.d entry's md5sums
    lists is in the SBOM with that MD5."""
    claimed = {}
    for path in sboms.files:
        if path.startswith("/var/lib/dpkg/status.d/") and path.endswith(".md5sums"):
            claimed.update(pkgmeta.md5sums(sboms.read(path).decode()))
    regular = {path: md5 for path, md5 in claimed.items() if sboms.files[path].isfile()}
    listed = {file["fileName"].removeprefix("."): {c["algorithm"]: c["checksumValue"]
                                                   for c in file["checksums"]}
              for file in sboms.spdx["files"]}
    assert {path: listed[path].get("MD5") for path in regular} == regular


# --- how licenses are read, on made-up metadata

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: GPL-2+ or Artistic

Files: lib/*
License: public-domain
 Nobody owns this.

Files: doc/*
License: Permission to use, copy, modify, and distribute this software and its
 documentation is hereby granted.

License: Artistic
 The Artistic License's text.
"""


@pytest.mark.app
def test_dep5_names_become_spdx_ids_and_the_rest_refs_with_their_text() -> None:
    licenses = pkgmeta.Licenses()
    declared = pkgmeta.debian_license(DEP5, "demo", licenses)
    parts = declared.split(" AND ")
    assert parts[0] == "(GPL-2.0-or-later OR Artistic-1.0)"
    texts = {ref: text for ref, (_, text) in licenses.refs.items()}
    assert texts[parts[1]] == "public-domain\nNobody owns this."
    assert "is hereby granted" in texts[parts[2]]  # the text written where the name belongs
    free_form = "This package was put together by someone.\nIt is under the Python license.\n"
    (ref,) = [pkgmeta.debian_license(free_form, "python3.13", licenses)]
    assert licenses.refs[ref] == ("python3.13-copyright", free_form)


@pytest.mark.app
def test_python_licenses_from_expression_classifier_or_license_file() -> None:
    licenses = pkgmeta.Licenses()

    def read(headers: str, files: dict[str, str] | None = None) -> str:
        return pkgmeta.python_license(pkgmeta.metadata(headers), files or {}, licenses)

    assert read("Name: a\nLicense-Expression: MIT OR Apache-2.0\n") == "MIT OR Apache-2.0"
    assert read("Name: b\nClassifier: License :: OSI Approved :: MIT License\n") == "MIT"
    family = read("Name: c\nClassifier: License :: OSI Approved :: BSD License\n",
                  {"LICENSE.txt": "Redistribution and use..."})
    assert licenses.refs[family][1] == "Redistribution and use..."
    assert read("Name: d\n") == "NOASSERTION"
