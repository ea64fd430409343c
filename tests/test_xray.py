"""tools/xray.py: its report on the real image agrees with the engine; its layer logic holds."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import ROOT, Engine

XRAY = ROOT / "tools" / "xray.py"
REPORT_TIMEOUT = 100  # one save, gzip and read; the module stays under 2 min
PINNED = ("flask", "gunicorn", "supervisor")


def load_xray() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xray", XRAY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["xray"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# --- reading the Markdown back


def sections(report: str) -> dict[str, str]:
    """'## Title (N)' -> body, the count left out of the key."""
    found = {}
    for block in re.split(r"^## ", report, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        found[re.sub(r" \(\d+\)$", "", title.strip())] = body
    return found


def first_table(body: str) -> list[dict[str, str]]:
    lines = []
    for line in body.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    if not lines:
        return []
    cells = [[unescape(c) for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
             for line in lines]
    header, rows = cells[0], cells[2:]  # cells[1] is the alignment row
    return [dict(zip(header, row, strict=True)) for row in rows]


def unescape(cell: str) -> str:
    return cell.strip().replace("\\|", "|")


def unquote(cell: str) -> str:
    """The text of a cell that is one code span."""
    match = re.fullmatch(r"(`+) ?(.*?) ?\1", cell)
    assert match, f"not a code span: {cell!r}"
    return match[2]


def config_field(report: str, name: str) -> str:
    rows = {row["Field"]: row["Value"] for row in first_table(sections(report)["Config"])}
    return rows[name]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the real image


@pytest.fixture(scope="module")
def inspected(engine: Engine, image: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(engine("image", "inspect", image))[0]
    return found


@pytest.fixture(scope="module")
def report(image: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One run, no --engine: it must find the same engine the fixtures did."""
    output = tmp_path_factory.mktemp("xray") / "report.md"
    result = subprocess.run([sys.executable, str(XRAY), image, "-o", str(output)],
                            capture_output=True, text=True, timeout=REPORT_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # -o takes the report off stdout
    return output.read_text()


pytestmark = pytest.mark.timeout(REPORT_TIMEOUT + 20)


def test_report_names_the_engine_the_fixtures_found(report: str, engine: Engine) -> None:
    rows = {row["What"]: row["Value"] for row in first_table(report.split("\n## ")[0])}
    assert rows["Engine"] == engine.command


def test_sizes(report: str, inspected: dict[str, Any]) -> None:
    rows = {row["What"].split(" (")[0]: row for row in first_table(sections(report)["Size"])}
    uncompressed, compressed = int(rows["Uncompressed"]["Bytes"]), int(rows["Compressed"]["Bytes"])
    assert uncompressed == inspected["Size"]
    assert 0 < compressed < uncompressed
    assert rows["Compressed"]["MB"] == f"{compressed / 1e6:.1f}"


def test_one_row_per_layer_of_the_image(report: str, inspected: dict[str, Any]) -> None:
    layers = first_table(sections(report)["Layers"])
    assert len(layers) == len(inspected["RootFS"]["Layers"])
    assert all(row["Created by"] and row["Entries"].isdigit() for row in layers)


def test_config(report: str, inspected: dict[str, Any]) -> None:
    assert "`1300/tcp`" in config_field(report, "Exposed ports").split(", ")
    user = inspected["Config"].get("User") or ""
    shown = config_field(report, "User")
    if user:
        assert unquote(shown.split(" → ")[0]) == user
    else:
        assert shown.startswith("not set")
    # Docker keeps HEALTHCHECK in .Config; Podman's inspect moves it to the top level.
    health = inspected["Config"].get("Healthcheck") or inspected.get("Healthcheck")
    assert health, "the image declares a HEALTHCHECK"
    assert unquote(config_field(report, "Healthcheck test")) == json.dumps(health["Test"])
    assert config_field(report, "Healthcheck retries") == str(health["Retries"])


def test_debian_packages_with_versions(report: str) -> None:
    packages = {row["Package"]: row["Version"]
                for row in first_table(sections(report)["Debian packages"])}
    assert re.fullmatch(r"1\.\d+\.\d+\S*", packages.get("nginx", "")), packages.get("nginx")
    python = {name: version for name, version in packages.items()
              if re.fullmatch(r"(lib)?python3\.13(-[a-z]+)?", name)}
    assert python, "a python3.13 package"
    assert all(version.startswith("3.13.") for version in python.values()), python


def test_python_distributions_match_the_lock(report: str) -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)",
                           (ROOT / "app" / "requirements.txt").read_text(), re.M))
    pins = {normalize(name): version for name, version in pins.items()}
    found = {normalize(row["Name"]): row["Version"]
             for row in first_table(sections(report)["Python distributions"])}
    for name in PINNED:
        assert found.get(name) == pins[name], name


def test_setuid_section_lists_only_setuid_or_setgid_files(report: str) -> None:
    body = sections(report)["setuid and setgid files"]
    rows = first_table(body)
    if not rows:
        assert "None." in body
    for row in rows:
        octal = re.search(r"\((\d{4})\)", row["Mode"])
        assert octal, row
        assert int(octal[1], 8) & 0o6000, row


def test_tmp_is_writable(report: str) -> None:
    rows = first_table(sections(report)["Writable paths"])
    tmp = next(row for row in rows if unquote(row["Path"]) == "/tmp")
    assert "world-writable" in tmp["Why"]


def test_totals(report: str) -> None:
    rows = {row["What"]: int(row["Count"].split()[0])
            for row in first_table(sections(report)["Totals"])}
    assert rows["Regular files"] > 0
    assert rows["ELF executables"] >= 2  # python3.13 and nginx at least
    assert rows["ELF files"] == sum(rows[k] for k in (
        "ELF executables", "ELF shared libraries", "Other ELF (objects, modules)"))


# --- the layer logic, on a hand-made archive: whiteouts, opaque dirs, status.d

ELF_EXEC = b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + bytes(46)


def layer(*entries: tuple[str, int, bytes | None, int]) -> bytes:
    """(name, mode, content or None for a directory, uid) -> an uncompressed layer tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode, content, uid in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid = mode, uid, uid
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def archive(path: Path, layers: list[bytes]) -> Path:
    config = {"config": {"User": "app"}, "history": [{"created_by": "x"}] * len(layers)}
    with tarfile.open(path, "w") as tar:
        members = {"config.json": json.dumps(config).encode()}
        members |= {f"{n}.tar": data for n, data in enumerate(layers)}
        members["manifest.json"] = json.dumps([{"Config": "config.json", "RepoTags": [],
                                                "Layers": [f"{n}.tar" for n in
                                                           range(len(layers))]}]).encode()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


STATUS = b"""Package: gone
Status: deinstall ok config-files
Version: 1

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.41-12
Description: GNU C Library
 continued line: not a field

"""
METADATA = b"Metadata-Version: 2.1\nName: Flask\nVersion: 3.1.3\n\nName: not-a-header\n"


def test_layers_apply_in_order_with_whiteouts(tmp_path: Path) -> None:
    xray = load_xray()
    lower = layer(
        ("./etc", 0o755, None, 0),
        ("./etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\napp:x:10001:10001::/:/x\n", 0),
        ("./etc/group", 0o644, b"root:x:0:\napp:x:10001:\nextra:x:20:app\n", 0),
        ("./var/lib/dpkg/status", 0o644, STATUS, 0),
        ("./old/a", 0o644, b"a", 0),
        ("./old/b", 0o644, b"b", 0),
        ("./opaque/lower", 0o644, b"", 0),
        ("./site/old-1.0.dist-info/METADATA", 0o644, b"Name: old\nVersion: 1.0\n", 0),
        ("./bin/tool", 0o755, ELF_EXEC, 0),
        ("./bin/su", 0o4755, b"", 0),
        ("./tmp", 0o1777, None, 0),
    )
    upper = layer(
        ("old/.wh.a", 0o644, b"", 0),
        ("opaque/.wh..wh..opq", 0o644, b"", 0),
        ("opaque/upper", 0o644, b"", 0),
        ("site/.wh.old-1.0.dist-info", 0o644, b"", 0),
        ("site/flask-3.1.3.dist-info/METADATA", 0o644, METADATA, 0),
        ("var/lib/dpkg/status.d/nginx", 0o644,
         b"Package: nginx\nVersion: 1.26.3\nArchitecture: amd64\n", 0),
        ("var/lib/dpkg/status.d/nginx.md5sums", 0o644, b"abc  usr/sbin/nginx\n", 0),
        ("data", 0o750, None, 10001),
        ("data/file", 0o644, b"", 10001),
        ("shared", 0o775, None, 20),
    )
    read = xray.read_archive(archive(tmp_path / "image.tar", [lower, upper]))
    nodes = read.fs.nodes
    assert "/old/a" not in nodes and "/old/b" in nodes
    assert "/opaque/lower" not in nodes and "/opaque/upper" in nodes
    assert [layer.whiteouts for layer in read.fs.layers] == [0, 3]
    assert nodes["/bin/tool"].elf == "executable"

    packages, others = xray.debian_packages(read.fs)
    assert [(p.name, p.version, p.sources) for p in packages] == [
        ("libc6", "2.41-12", ["status"]), ("nginx", "1.26.3", ["status.d/nginx"])]
    assert others == ["gone (deinstall ok config-files)"]
    assert [(d.name, d.version) for d in xray.python_distributions(read.fs)] == [
        ("Flask", "3.1.3")]

    user = xray.resolve_user("app", xray.Accounts.read(read.fs))
    assert (user.uid, user.gid, user.groups) == (10001, 10001, {10001, 20})
    writable = {w.path: w for w in xray.writable_paths(read.fs, user)}
    assert set(writable) == {"/data", "/shared", "/tmp"}
    assert writable["/data"].below == 1 and writable["/shared"].why == "group"
    assert xray.resolve_user("10001:10001", xray.Accounts.read(read.fs)).groups == {10001}
