"""Image layer: what only a real container shows (users, ports, PID 1, health, CPUs, logs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from harness.checks import access_log, assert_contract
from harness.containers import Container
from harness.engine import Engine
from harness.images import HARDENED
from harness.procfs import processes
from harness.server import free_port, wait_until_up
from stack.procfs import stat
from stack.rundir import RunDir
from stack.settings import defaults

pytestmark = [pytest.mark.image, pytest.mark.engine]

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


def test_only_the_app_and_metrics_ports_listen_and_gunicorn_is_on_a_private_socket(
        container: Container) -> None:
    main = int(container.inspect("{{.State.Pid}}"))
    ports = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{main}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if table.startswith("udp") or fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    assert ports == {defaults().port, defaults().metrics_port}
    # The named UNIX sockets are Gunicorn's and Nginx's status, in the private
    # directory: Supervisord has no control socket.
    unix = Path(f"/proc/{main}/net/unix").read_text().splitlines()[1:]
    named = {line.split()[-1] for line in unix if len(line.split()) == 8}
    run = RunDir.under("/tmp")  # the image's TMPDIR
    assert named == {run.gunicorn_socket, run.nginx_status}
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


def test_the_healthcheck_ignores_proxy_settings(run_container) -> None:
    """Proxies set for the app's own outgoing requests (a corporate proxy, here a
    closed port) must not carry the health check's request to loopback."""
    closed = f"http://127.0.0.1:{free_port()}"
    server = run_container(env={name: closed for name in (
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")})
    result = server.exec("python", "-m", "stack.healthcheck")
    assert result.returncode == 0, result.stderr
    server.wait_healthy()


def test_a_stop_while_nginx_t_holds_the_start_ends_it_at_once(run_container,
                                                              scratch: Path) -> None:
    """A conf.d file that is a FIFO: `nginx -t` waits on it for ever."""
    conf_d = Path(tempfile.mkdtemp(dir=scratch))
    os.mkfifo(conf_d / "held.conf")
    conf_d.chmod(0o755)
    (conf_d / "held.conf").chmod(0o666)
    server = run_container(wait=False, args=(f"--volume={conf_d}:/srv/nginx/conf.d",))
    deadline = time.monotonic() + 30
    while not any(p["cmdline"].startswith("nginx -t") for p in processes(server).values()):
        assert time.monotonic() < deadline and server.running(), server.logs()
        time.sleep(0.1)
    sent = time.time()
    server.terminate()
    assert server.wait_exit(10) == 128 + signal.SIGTERM
    assert server.exited_at() - sent < 2
    assert "stopped by SIGTERM during the start" in server.logs()


RESTARTS = 5


def restarted(engine: Engine, server: Container, round_: int) -> None:
    """The engine's restart (SIGTERM, then a new start), or a crash's: SIGKILL,
    which leaves every pid file and socket behind, then a start."""
    if round_ % 2:
        engine("kill", "--signal", "KILL", server.id)
        server.wait_exit(30)
        engine("start", server.id)
    else:
        engine("restart", server.id, timeout=60)


@pytest.mark.parametrize("args", [(), (*HARDENED[:1], "--volume={volume}:/tmp")],
                         ids=["writable", "read-only-tmp-volume"])
def test_every_restart_trusts_nothing_the_last_run_left(engine: Engine, run_container,
                                                        args: tuple[str, ...]) -> None:
    volume = engine("volume", "create")
    try:
        server = run_container(args=tuple(arg.format(volume=volume) for arg in args))
        for round_ in range(RESTARTS):
            before, since = boot_ticks(), time.time()
            restarted(engine, server, round_)
            wait_until_up(server.base_url, server.running, server.logs)
            tree = processes(server)
            assert tree and all(stat(pid).start >= before for pid in tree), tree
            assert_contract(requests.get(f"{server.base_url}/", timeout=10))
            logs = logs_since(engine, server, since)
            # Nothing of the last run's was found alive, signalled or restarted.
            assert '"message":"serving app:app' in logs, logs  # this run's, and only it
            assert "crashed master" not in logs, logs
            assert "not expected" not in logs, logs
    finally:
        server.remove()
        engine("volume", "rm", "--force", volume, check=False)


def boot_ticks() -> int:
    """Now, in the clock ticks after boot that /proc's start times count."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK"))


def logs_since(engine: Engine, server: Container, since: float) -> str:
    """What the container wrote from `since` (time.time()) on."""
    result = subprocess.run([engine.command, "logs", "--since", f"{since:.3f}", server.id],
                            capture_output=True, text=True, errors="replace", timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


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
