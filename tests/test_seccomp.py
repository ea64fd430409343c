"""security/seccomp.json blocks what the stack never needs (that the stack works under it
is the `hardened` layer of every contract and lifecycle test).

Each call is tried twice, as root with the capabilities it needs: without any
seccomp profile it works, or fails for a reason of its own (a bad argument);
with the profile it gets EPERM. So the profile, not a missing capability or a
bad argument, is what refuses it.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable

import pytest

from harness.containers import Container
from harness.images import SECCOMP_PROFILE

pytestmark = [pytest.mark.hardened, pytest.mark.engine]

RunContainer = Callable[..., Container]

# Root, with what each call needs; the profile is then the only thing that differs.
ABLE = ("--user=0", "--cap-add=SYS_ADMIN", "--cap-add=SYS_PTRACE", "--cap-add=SYS_CHROOT",
        "--cap-add=NET_RAW")
UNCONFINED = (*ABLE, "--security-opt=seccomp=unconfined")
CONFINED = (*ABLE, f"--security-opt=seccomp={SECCOMP_PROFILE}")
# Prints {call: 0 if it worked, else its errno}, each call made in a child of its
# own (a namespace or a chroot must not change what the next call finds).
PROBE = """
import ctypes, json, os, platform, socket
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": {"keyctl": 250, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
                 "io_uring_setup": 425, "clone3": 435},
      "aarch64": {"keyctl": 219, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
                  "io_uring_setup": 425, "clone3": 435}}[platform.machine()]
def syscall(name, *args):
    return libc.syscall(NR[name], *args)
def netlink():
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
    return 0
def packet():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    return 0
CALLS = {
    "mount": lambda: libc.mount(b"none", b"/mnt", b"tmpfs", 0, None),
    "umount2": lambda: libc.umount2(b"/srv", 0),  # not a mount point: EINVAL
    "unshare_mount": lambda: libc.unshare(0x00020000),  # CLONE_NEWNS
    "unshare_user": lambda: libc.unshare(0x10000000),  # CLONE_NEWUSER
    "setns": lambda: libc.setns(-1, 0),
    "ptrace": lambda: libc.ptrace(0, 0, None, None),  # PTRACE_TRACEME
    "keyctl": lambda: syscall("keyctl", 0, -3, 0),  # KEYCTL_GET_KEYRING_ID, the session's
    "bpf": lambda: syscall("bpf", 0xFFFF, None, 0),
    "perf_event_open": lambda: syscall("perf_event_open", None, 0, -1, -1, 0),
    "userfaultfd": lambda: syscall("userfaultfd", 0),
    "io_uring_setup": lambda: syscall("io_uring_setup", 1, None),
    "personality": lambda: libc.personality(0xFFFFFFFF),  # only asks
    "chroot": lambda: libc.chroot(b"/"),
    "netlink_socket": netlink,
    "packet_socket": packet,
    "clone3": lambda: syscall("clone3", None, 0),
}
found = {}
for name, call in CALLS.items():
    pid = os.fork()
    if pid == 0:
        try:
            code = ctypes.get_errno() if call() == -1 else 0
        except OSError as error:
            code = error.errno
        os._exit(code)
    found[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(found))
"""
# What the profile answers instead of EPERM: clone3 is ENOSYS, so that glibc
# falls back to clone, whose flags the profile checks.
OTHERWISE = {"clone3": errno.ENOSYS}


def probe(run_container: RunContainer, args: tuple[str, ...]) -> dict[str, int]:
    """The probe run as the container's command, instead of the server."""
    container = run_container(args=args, wait=False, command=("python", "-c", PROBE))
    assert container.wait_exit(60) == 0, container.logs()
    return json.loads(container.output().stdout.strip().splitlines()[-1])


def test_the_profile_is_what_refuses_each_call(run_container: RunContainer) -> None:
    unconfined = probe(run_container, UNCONFINED)
    confined = probe(run_container, CONFINED)
    for name, code in confined.items():
        assert code == OTHERWISE.get(name, errno.EPERM), (name, errno.errorcode.get(code))
        assert unconfined[name] != code, (
            f"{name} fails with {errno.errorcode.get(code)} without the profile too")
