"""Write an image's SBOMs, SPDX 2.3 and CycloneDX 1.6 JSON, from what the image holds.

    python3 sbom.py ROOT --name NAME --layer SRC=DEST [--layer SRC=DEST ...]
Each --layer is a directory of the build and where its files sit in the image
(`/rootfs=/`, `/opt/venv=/opt/venv`); a later layer's file overrides an earlier
one's at the same path, as the image's layers do. Every installed Debian package
(dpkg's status file and status.d entries) and every Python distribution (each
*.dist-info) is a component, with its version, PURL and license (pkgmeta.py
says how each is read), and the files its metadata lists and the image holds
unchanged, with their checksums: md5sums' MD5 for Debian's files, RECORD's
SHA-256 for Python's, and the SHA-1 SPDX requires of every file. Both
documents name the operating system (os-release's ID and VERSION_ID) too, and
go into ROOT's SBOM_DIR (ROOT: the directory that becomes the
image's `/`), as SPDX_FILE and CDX_FILE.
The Dockerfile runs it for the runtime and the builder, and flask-stack-add
(add.py) again for an image with an app, so the SBOM lists the app's packages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:
    from stack.build import pkgmeta
except ImportError:  # in the builder: a script beside pkgmeta.py, as add.py is
    import pkgmeta  # type: ignore[no-redef]

SBOM_DIR = "/usr/share/sbom"
SPDX_FILE = "flask-stack.spdx.json"
CDX_FILE = "flask-stack.cdx.json"
# Mounted at run time (and the build's secret): never part of what the image holds.
SKIPPED = ("/proc", "/sys", "/dev", "/run/secrets", SBOM_DIR)
STATUS = "/var/lib/dpkg/status"
STATUS_D = "/var/lib/dpkg/status.d"
NAMESPACE = "https://flask-stack.invalid/sbom"


@dataclass
class File:
    path: str  # in the image
    checksums: dict[str, str]  # SPDX algorithm name -> hex


@dataclass
class Component:
    kind: str  # deb or pypi
    name: str
    version: str
    purl: str
    license: str  # an SPDX expression, or NOASSERTION
    architecture: str = ""
    files: list[File] = field(default_factory=list)


class Image:
    """The image's file system as the layers make it, read by image path."""

    def __init__(self, layers: list[tuple[Path, str]]) -> None:
        self.layers = layers

    def locate(self, path: str) -> Path | None:
        for source, destination in reversed(self.layers):
            if destination == "/" or path == destination or path.startswith(destination + "/"):
                candidate = source / path.removeprefix(destination.rstrip("/")).lstrip("/")
                if os.path.lexists(candidate):
                    return candidate
        return None

    def read(self, path: str) -> bytes | None:
        located = self.locate(path)
        if located is None or not located.is_file():
            return None
        return located.read_bytes()

    def regular(self, path: str) -> bytes | None:
        """A regular file's bytes (not a symlink's target): what the metadata's
        checksum was taken of."""
        located = self.locate(path)
        if located is None or located.is_symlink() or not located.is_file():
            return None
        return located.read_bytes()

    def listdir(self, path: str) -> dict[str, str]:
        """A directory's entries across the layers: name -> image path."""
        found = {}
        for source, destination in self.layers:
            if destination == "/" or path == destination or path.startswith(destination + "/"):
                real = source / path.removeprefix(destination.rstrip("/")).lstrip("/")
                if real.is_dir() and not real.is_symlink():
                    found.update({name: f"{path.rstrip('/')}/{name}" for name in os.listdir(real)})
        return found

    def dist_infos(self) -> list[str]:
        """Every *.dist-info directory in the image, by image path."""
        found: set[str] = set()
        for source, destination in self.layers:
            for directory, subdirectories, _ in os.walk(source):
                image_path = os.path.normpath(os.path.join(destination,
                                                           os.path.relpath(directory, source)))
                if any(image_path == s or image_path.startswith(s + "/") for s in SKIPPED):
                    subdirectories[:] = []
                    continue
                for name in list(subdirectories):
                    if name.endswith(".dist-info"):
                        found.add(os.path.join(image_path, name))
                        subdirectories.remove(name)
        return sorted(found)


def debian_components(image: Image, distro: str, licenses: pkgmeta.Licenses) -> list[Component]:
    """Installed packages from the status file and status.d, as dpkg and scanners read them."""
    records: list[tuple[dict[str, str], str]] = []  # (stanza, its md5sums' path)
    status = image.read(STATUS)
    if status is not None:
        records += [(stanza, "") for stanza in pkgmeta.stanzas(status.decode())]
    for name, path in sorted(image.listdir(STATUS_D).items()):
        if not name.endswith(".md5sums"):
            records += [(stanza, f"{path}.md5sums")
                        for stanza in pkgmeta.stanzas((image.read(path) or b"").decode())]
    records = [(stanza, sums) for stanza, sums in records
               if "Package" in stanza and pkgmeta.installed(stanza)]
    # Debian points some packages' doc directory at a sibling of the same source
    # (libgcc-s1 -> gcc-14-base), a link the slim base drops: that sibling's file.
    copyrights: dict[str, bytes] = {}
    for stanza, _ in records:
        text = image.read(f"/usr/share/doc/{stanza['Package']}/copyright")
        if text is not None:
            copyrights.setdefault(stanza.get("Source", stanza["Package"]).split()[0], text)
            copyrights[stanza["Package"]] = text
    found: dict[tuple[str, str], Component] = {}
    for stanza, sums_path in records:
        name, arch = stanza["Package"], stanza.get("Architecture", "")
        version = stanza.get("Version", "")
        sums_path = sums_path or next(
            (p for p in (f"/var/lib/dpkg/info/{name}:{arch}.md5sums",
                         f"/var/lib/dpkg/info/{name}.md5sums") if image.locate(p)), "")
        source = stanza.get("Source", name).split()[0]
        copyright_text = copyrights.get(name) or copyrights.get(source)
        license_ = (pkgmeta.debian_license(copyright_text.decode(errors="replace"), source,
                                           licenses) if copyright_text else "NOASSERTION")
        component = Component("deb", name, version,
                              pkgmeta.deb_purl(name, version, arch, distro), license_, arch)
        sums = pkgmeta.md5sums((image.read(sums_path) or b"").decode()) if sums_path else {}
        for path, md5 in sorted(sums.items()):
            data = image.regular(path)
            if data is not None and hashlib.md5(data).hexdigest() == md5:
                component.files.append(File(path, {**pkgmeta.digests(data), "MD5": md5}))
        found[(name, arch)] = component
    return sorted(found.values(), key=lambda c: (c.name, c.architecture))


def python_components(image: Image, licenses: pkgmeta.Licenses) -> list[Component]:
    found = []
    for dist_info in image.dist_infos():
        meta_bytes = image.read(f"{dist_info}/METADATA")
        if meta_bytes is None:
            continue
        meta = pkgmeta.metadata(meta_bytes.decode(errors="replace"))
        name, version = meta.get("Name", "?"), meta.get("Version", "?")
        site = os.path.dirname(dist_info)
        license_files = {}
        for license_file in meta.get_all("License-File") or []:
            for candidate in (f"{dist_info}/licenses/{license_file}",
                              f"{dist_info}/{license_file}"):
                data = image.read(candidate)
                if data is not None:
                    license_files[license_file] = data.decode(errors="replace")
                    break
        component = Component("pypi", name, version, pkgmeta.pypi_purl(name, version),
                              pkgmeta.python_license(meta, license_files, licenses))
        recorded = pkgmeta.record((image.read(f"{dist_info}/RECORD") or b"").decode())
        for relative, sha256 in sorted(recorded.items()):
            path = os.path.normpath(f"{site}/{relative}")
            data = image.regular(path)
            if data is not None and hashlib.sha256(data).hexdigest() == sha256:
                component.files.append(File(path, pkgmeta.digests(data)))
        found.append(component)
    return sorted(found, key=lambda c: (pkgmeta.normalized(c.name), c.version))


def spdx_id(*parts: str) -> str:
    return "SPDXRef-" + "-".join("".join(ch if ch.isalnum() or ch == "." else "-" for ch in p)
                                 for p in parts)


def spdx(name: str, created: str, serial: uuid.UUID, system: tuple[str, str],
         components: list[Component], licenses: pkgmeta.Licenses) -> dict:
    root, os_id = spdx_id("image"), spdx_id("OperatingSystem")
    unknown = {"downloadLocation": "NOASSERTION", "filesAnalyzed": False,
               "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
               "copyrightText": "NOASSERTION"}
    packages = [{"SPDXID": root, "name": name, **unknown, "primaryPackagePurpose": "CONTAINER"},
                {"SPDXID": os_id, "name": system[0], "versionInfo": system[1], **unknown,
                 "primaryPackagePurpose": "OPERATING-SYSTEM"}]
    files: list[dict] = []
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root},
                     {"spdxElementId": root, "relationshipType": "CONTAINS",
                      "relatedSpdxElement": os_id}]
    seen_files: set[str] = set()
    for component in components:
        ident = spdx_id("Package", component.kind, component.name, component.architecture,
                        component.version)
        owned = [f for f in component.files if f.path not in seen_files]
        seen_files.update(f.path for f in owned)
        package = {"SPDXID": ident, "name": component.name, "versionInfo": component.version,
                   "downloadLocation": "NOASSERTION", "filesAnalyzed": bool(owned),
                   "licenseConcluded": "NOASSERTION", "licenseDeclared": component.license,
                   "copyrightText": "NOASSERTION",
                   "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                                     "referenceType": "purl",
                                     "referenceLocator": component.purl}]}
        if owned:
            code = hashlib.sha1("".join(sorted(f.checksums["SHA1"] for f in owned)).encode())
            package["packageVerificationCode"] = {"packageVerificationCodeValue": code.hexdigest()}
        packages.append(package)
        relationships.append({"spdxElementId": root, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ident})
        for file in owned:
            file_id = spdx_id("File", hashlib.sha1(file.path.encode()).hexdigest()[:20])
            files.append({"SPDXID": file_id, "fileName": "." + file.path,
                          "checksums": [{"algorithm": algorithm, "checksumValue": value}
                                        for algorithm, value in sorted(file.checksums.items())],
                          "licenseConcluded": "NOASSERTION", "copyrightText": "NOASSERTION"})
            relationships.append({"spdxElementId": ident, "relationshipType": "CONTAINS",
                                  "relatedSpdxElement": file_id})
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": name, "documentNamespace": f"{NAMESPACE}/{serial}",
        "creationInfo": {"created": created, "creators": ["Tool: flask-stack-sbom"]},
        "packages": packages, "files": files, "relationships": relationships,
        "hasExtractedLicensingInfos": [
            {"licenseId": ident, "name": license_name, "extractedText": text}
            for ident, (license_name, text) in sorted(licenses.refs.items())],
    }


CDX_HASHES = {"SHA1": "SHA-1", "SHA256": "SHA-256", "MD5": "MD5"}


def cyclonedx(name: str, created: str, serial: uuid.UUID, system: tuple[str, str],
              components: list[Component]) -> dict:
    listed: list[dict] = [{"type": "operating-system", "bom-ref": "os", "name": system[0],
                           "version": system[1]}]
    for component in components:
        entry: dict = {"type": "library", "bom-ref": component.purl, "name": component.name,
                       "version": component.version, "purl": component.purl}
        if component.license != "NOASSERTION":
            entry["licenses"] = [{"expression": component.license}]
        if component.files:
            entry["components"] = [
                {"type": "file", "bom-ref": f"{component.purl}#{file.path}", "name": file.path,
                 "hashes": [{"alg": CDX_HASHES[algorithm], "content": value}
                            for algorithm, value in sorted(file.checksums.items())]}
                for file in component.files]
        listed.append(entry)
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": serial.urn,
        "version": 1,
        "metadata": {"timestamp": created,
                     "tools": {"components": [{"type": "application",
                                               "name": "flask-stack-sbom"}]},
                     "component": {"type": "container", "bom-ref": "image", "name": name}},
        "components": listed,
        "dependencies": [{"ref": "image", "dependsOn": ["os", *(c.purl for c in components)]}],
    }


def write(root: Path, name: str, layers: list[tuple[Path, str]]) -> list[Component]:
    """Both SBOMs of the image the layers make, into root's SBOM_DIR; its components."""
    image = Image(layers)
    release = pkgmeta.os_release((image.read("/etc/os-release") or b"").decode())
    # Scanners match Debian's packages to its security tracker by this (debian 13).
    system = pkgmeta.distro(release).split("-", 1)
    licenses = pkgmeta.Licenses()
    components = (debian_components(image, pkgmeta.distro(release), licenses)
                  + python_components(image, licenses))
    # The same contents make the same document id; SOURCE_DATE_EPOCH fixes the date.
    facts = json.dumps([(c.purl, [f.checksums for f in c.files]) for c in components])
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"{NAMESPACE}/{name}/{facts}")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                            time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())))
    out = root / SBOM_DIR.lstrip("/")
    out.mkdir(parents=True, exist_ok=True)
    # Compact: they travel in every image (`jq .` shows them indented).
    for path, document in ((SPDX_FILE, spdx(name, created, serial, (system[0], system[1]),
                                            components, licenses)),
                           (CDX_FILE, cyclonedx(name, created, serial, (system[0], system[1]),
                                                components))):
        (out / path).write_text(json.dumps(document, separators=(",", ":")) + "\n")
    return components


def layer(text: str) -> tuple[Path, str]:
    source, sep, destination = text.partition("=")
    if not sep or not destination.startswith("/"):
        raise argparse.ArgumentTypeError(f"expected SRC=/DEST, not {text!r}")
    return Path(source), destination


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path,
                        help=f"the directory that becomes the image's /: writes its {SBOM_DIR}")
    parser.add_argument("--name", required=True, help="the image's name in the documents")
    parser.add_argument("--layer", type=layer, action="append", required=True,
                        help="SRC=DEST: a directory and where it sits in the image")
    args = parser.parse_args(argv)
    components = write(args.root, args.name, args.layer)
    kinds = {kind: sum(c.kind == kind for c in components) for kind in ("deb", "pypi")}
    print(f"sbom: {args.name}: {kinds['deb']} Debian packages, {kinds['pypi']} Python "
          f"distributions, {sum(len(c.files) for c in components)} files")


if __name__ == "__main__":
    main()
