"""security/seccomp.json: the stack works under the profile, and what escapes use stays blocked."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable

import requests

from conftest import ROOT, Container
from test_contract import assert_json_error

RunContainer = Callable[..., Container]

CONFINED = (f"--security-opt=seccomp={ROOT / 'security' / 'seccomp.json'}",)
# Prints {check: errno, or the exception's name; 0 if the call worked}. Namespaces last:
# without the profile unshare(CLONE_NEWUSER) may work and change what follows.
PROBE = """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(function, *args):
    return ctypes.get_errno() if function(*args) == -1 else 0
def unshare(flags):
    try:
        os.unshare(flags)
    except OSError as error:
        return type(error).__name__
    return 0
print(json.dumps({
    "clone3": call(libc.syscall, 435, None, 0),
    "ptrace": call(libc.ptrace, 0, 0, None, None),
    "mount": call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None),
    "unshare_mount": unshare(os.CLONE_NEWNS),
    "unshare_user": unshare(os.CLONE_NEWUSER),
}))
"""


def probe(container: Container) -> dict[str, int | str]:
    result = container.exec("python", "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_stack_works_under_the_profile(run_container: RunContainer) -> None:
    server = run_container(args=CONFINED)
    response = requests.get(f"{server.base_url}/", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"msg": "Success!"}
    assert requests.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    assert_json_error(requests.get(f"{server.base_url}/nope", timeout=10), 404)
    assert server.exec("python", "-m", "stack.healthcheck").returncode == 0
    assert server.stop() == 0, server.logs()


def test_the_profile_blocks_namespaces_mount_ptrace_and_clone3(
        run_container: RunContainer) -> None:
    assert probe(run_container(args=CONFINED)) == {
        "clone3": errno.ENOSYS,  # so glibc falls back to clone, whose flags are checked
        "ptrace": errno.EPERM,
        "mount": errno.EPERM,
        "unshare_mount": "PermissionError",
        "unshare_user": "PermissionError",
    }
    # The control: unconfined, clone3 reaches the kernel (EINVAL for its NULL arguments).
    unconfined = run_container(args=("--security-opt=seccomp=unconfined",))
    assert probe(unconfined)["clone3"] != errno.ENOSYS
