"""The image's users and groups, and the user its config runs as."""

from __future__ import annotations

from collections.abc import Iterator

from tools.xray.facts import Accounts, RunUser
from tools.xray.filesystem import Filesystem


def read_accounts(fs: Filesystem) -> Accounts:
    users: dict[str, tuple[int, int]] = {}
    for fields in colon_lines(fs.text("/etc/passwd"), 4):
        if fields[2].isdigit() and fields[3].isdigit():
            users.setdefault(fields[0], (int(fields[2]), int(fields[3])))
    groups: dict[str, tuple[int, list[str]]] = {}
    for fields in colon_lines(fs.text("/etc/group"), 3):
        if fields[2].isdigit():
            members = [m for m in (fields[3] if len(fields) > 3 else "").split(",") if m]
            groups.setdefault(fields[0], (int(fields[2]), members))
    return Accounts(users, groups)


def colon_lines(text: str | None, minimum: int) -> Iterator[list[str]]:
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= minimum and not line.startswith("#"):
            yield fields


def resolve_user(spec: str, accounts: Accounts) -> RunUser:
    """Config.User as the runtime resolves it against the image's own /etc/passwd and group."""
    if not spec:  # no USER: uid 0, with or without an /etc/passwd
        return RunUser(spec, 0, 0, [0])
    user_part, _, group_part = spec.partition(":")
    name: str | None
    if user_part.isdigit():
        uid: int | None = int(user_part)
        name = accounts.user_name(int(user_part))
        gid = accounts.users[name][1] if name else 0  # an unknown uid gets gid 0
    elif user_part in accounts.users:
        name = user_part
        uid, gid = accounts.users[user_part]
    else:
        return RunUser(spec, None, 0, [], unresolved=f"user `{user_part}` is not in the "
                       "image's /etc/passwd: a container would not start")
    if group_part.isdigit():
        gid = int(group_part)
    elif group_part:
        if group_part not in accounts.groups:
            return RunUser(spec, None, 0, [], unresolved=f"group `{group_part}` is not in the "
                           "image's /etc/group: a container would not start")
        gid = accounts.groups[group_part][0]
    groups = {gid}
    if name and not group_part:  # runc adds /etc/group memberships only without a group
        groups |= {g for g, members in accounts.groups.values() if name in members}
    return RunUser(spec, uid, gid, sorted(groups), name)
