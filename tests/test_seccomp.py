"""security/seccomp.json blocks what the stack never needs (that the stack works under it
is the `hardened` layer of every contract and lifecycle test)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable

import pytest

from harness.containers import Container
from harness.images import SECCOMP_PROFILE

pytestmark = pytest.mark.hardened

RunContainer = Callable[..., Container]

CONFINED = (f"--security-opt=seccomp={SECCOMP_PROFILE}",)
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
