"""GUNICORN_CMD_ARGS, checked before anything starts: it may tune Gunicorn, never
undo what the stack relies on. Each refused option has a setting or would leave a
stack that starts and half works."""

from __future__ import annotations

import shlex

# Gunicorn's setting name: why the stack owns it.
REFUSED = {
    "bind": "Nginx reaches Gunicorn on the stack's private socket only",
    "chdir": "APP_DIR sets the app's directory",
    "daemon": "Supervisord must stay Gunicorn's parent",
    "forwarded_allow_ips": "the stack decides whose forwarded headers the app believes "
                           "(TRUSTED_PROXIES)",
    "group": "the container's user runs everything",
    "umask": "the socket stays usable by the container's user alone",
    "user": "the container's user runs everything",
    "worker_class": "WORKER_CLASS sets it (the stack's workers bound TIMEOUT)",
}


def problem(value: str) -> str | None:
    """Why GUNICORN_CMD_ARGS cannot be used as it is, in one line; None if it can."""
    from gunicorn.config import Config  # here only: the entrypoint calls this in a child

    parser = Config().parser()
    parser.error = _refuse  # type: ignore[method-assign]
    parser.exit = lambda *_: _refuse("--help and --version print and exit")  # type: ignore
    parser._print_message = lambda *_: None  # type: ignore[method-assign]
    try:
        given = parser.parse_args(shlex.split(value))
    except ValueError as error:
        return f"invalid GUNICORN_CMD_ARGS={value!r}: {error}"
    for name, reason in REFUSED.items():
        if getattr(given, name, None) is not None:
            option = "--" + name.replace("_", "-")
            return f"invalid GUNICORN_CMD_ARGS={value!r}: {option} is refused: {reason}"
    return None


def _refuse(message: str) -> None:
    """argparse's error, as an exception: its usage text is not our one line."""
    raise ValueError(message)
