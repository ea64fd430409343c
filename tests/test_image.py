"""Image layer: what only a real container shows (users, ports, PID 1, health, CPUs, logs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from harness.checks import access_log
from harness.containers import Container
from harness.engine import Engine
from harness.images import HARDENED
from harness.procfs import processes
from stack.rundir import RunDir
from stack.settings import defaults

pytestmark = pytest.mark.image

LISTEN = "0A"  # TCP state in /proc/net/tcp
INSTANCE = "/srv/app/instance"  # Flask's instance folder, where an app keeps its data
# Writes a file into the instance folder; prints the folder's owner and mode.
WRITE_INSTANCE = f"""
import os, stat
open(os.path.join({INSTANCE!r}, f"written-by-{{os.getuid()}}"), "w").write("data")
info = os.stat({INSTANCE!r})
print(f"{{info.st_uid}}:{{info.st_gid}}", oct(stat.S_IMODE(info.st_mode)))
"""


def test_supervisord_is_the_main_process(container: Container) -> None:
    tree = processes(container)
    main = int(container.inspect("{{.State.Pid}}"))
    assert "stack.entrypoint" in tree[main]["cmdline"]
    assert any("gunicorn" in p["cmdline"] for p in tree.values())
    assert any(p["name"] == "nginx" for p in tree.values())
    # Nothing else: the watchdog runs in Supervisord's loop, in this process.
    others = [p["cmdline"] for pid, p in tree.items()
              if pid != main and "gunicorn" not in p["cmdline"] and p["name"] != "nginx"]
    assert not others, others
    # Never Flask's development server.
    assert not any("flask" in p["cmdline"] or "werkzeug" in p["cmdline"] for p in tree.values())


def test_every_process_is_non_root(container: Container) -> None:
    tree = processes(container)
    assert len(tree) >= 6
    assert {p["uid"] for p in tree.values()} == {"10001"}


def test_only_port_1300_listens_and_gunicorn_is_on_a_private_socket(
        container: Container) -> None:
    main = int(container.inspect("{{.State.Pid}}"))
    ports = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{main}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if table.startswith("udp") or fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    assert ports == {1300}
    # The only named UNIX socket is Gunicorn's: Supervisord has no control socket.
    unix = Path(f"/proc/{main}/net/unix").read_text().splitlines()[1:]
    named = {line.split()[-1] for line in unix if len(line.split()) == 8}
    run = RunDir.under("/tmp")  # the image's TMPDIR
    assert named == {run.gunicorn_socket}
    modes = container.exec("python", "-c", (
        f"import os, stat; print(oct(stat.S_IMODE(os.stat('{run.root}').st_mode)),"
        f" oct(stat.S_IMODE(os.stat('{run.gunicorn_socket}').st_mode)))"))
    directory, sock = modes.stdout.split()
    assert directory == "0o700"
    assert int(sock, 8) & 0o077 == 0


def test_healthcheck_is_declared_and_passes(engine: Engine, image: str,
                                            container: Container) -> None:
    check = json.loads(engine("image", "inspect", "--format",
                              "{{json .Config.Healthcheck}}", image))
    assert "stack.healthcheck" in " ".join(check["Test"])
    # Docker runs the check by itself and reports the container healthy.
    container.wait_healthy()
    result = container.exec(*check["Test"][1:])
    assert result.returncode == 0, result.stderr


def test_healthcheck_fails_when_the_app_is_down(run_container) -> None:
    server = run_container()
    gunicorn = [str(pid) for pid, p in processes(server).items() if "gunicorn" in p["cmdline"]]
    subprocess.run(["kill", "-STOP", *gunicorn], check=True)  # hung, yet "running"
    try:
        result = server.exec("python", "-m", "stack.healthcheck")
        assert result.returncode == 1
        assert "healthcheck:" in result.stderr
    finally:
        subprocess.run(["kill", "-CONT", *gunicorn], check=True)


def test_workers_follow_the_cpu_quota(run_container) -> None:
    server = run_container(args=("--cpus=1",))
    assert f"2 gthread workers x {defaults().threads} threads (1 CPUs available)" in server.logs()
    workers = [p for p in processes(server).values()
               if "gunicorn" in p["cmdline"]]
    assert len(workers) == 1 + 2  # the master and two workers


def test_logs_go_to_stdout_and_no_log_files_exist(container: Container) -> None:
    request_id = requests.get(f"{container.base_url}/", timeout=10).headers["X-Request-ID"]
    assert request_id in access_log(container, request_id)  # its line arrives...
    result = container.output()
    assert request_id in result.stdout  # ...on stdout itself
    assert "Booting worker" in result.stdout + result.stderr
    files = container.exec("python", "-c", (
        "import os\n"
        "for top in ('/var/log', '/tmp', '/srv', '/opt'):\n"
        "    for d, _, names in os.walk(top):\n"
        "        print(*[os.path.join(d, n) for n in names if n.endswith('.log')], sep='\\n')"))
    assert files.stdout.strip() == ""


def test_port_1300_is_exposed(engine: Engine, image: str) -> None:
    exposed = json.loads(engine("image", "inspect", "--format",
                                "{{json .Config.ExposedPorts}}", image))
    assert list(exposed) == ["1300/tcp"]


@pytest.mark.parametrize("args", [(), ("--user=123456:0",), HARDENED[:2],
                                  (*HARDENED[:2], "--user=123456:0")],
                         ids=["default-user", "any-uid", "read-only", "read-only-any-uid"])
def test_a_new_named_volume_on_the_instance_folder_is_writable(engine: Engine, image: str,
                                                               args: tuple[str, ...]) -> None:
    """A new named volume takes the image folder's owner and mode (10001:0, 0775),
    so the default user and any UID in group 0 write there, read-only root or not."""
    volume = engine("volume", "create")
    try:
        written = engine("run", "--rm", f"--volume={volume}:{INSTANCE}", *args, image,
                         "python", "-c", WRITE_INSTANCE)
    finally:
        engine("volume", "rm", volume, check=False)
    assert written.splitlines()[-1] == "10001:0 0o775"
