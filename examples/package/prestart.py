"""Run by the image once before the server starts, in APP_DIR as the runtime user.

Brings the database up to date (seeding it once) and, unless FLASK_SECRET_KEY
is set, makes the session secret key once, in the instance folder, so that every
worker, and every replica on the same volume, signs sessions with the same key.
Replicas starting at once take turns (a lock in the instance folder); the
migration is safe on its own too, for `flask --app shop init-db`.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sys
import tempfile
from pathlib import Path

from shop import SECRET_KEY_FILE, create_app, db

EX_SCHEMA = 3  # the database is newer than this code: an older image was started


def make_secret_key(instance: Path) -> None:
    """Once: written aside, then renamed into place, so never seen half-written."""
    target = instance / SECRET_KEY_FILE
    if target.exists():
        return
    fd, temporary = tempfile.mkstemp(dir=instance, prefix=".secret_key.")  # mode 0600
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_hex(32))
    os.replace(temporary, target)
    print(f"prestart: made a secret key in {target}", file=sys.stderr)


def main() -> int:
    app = create_app()
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    # Replicas sharing the instance folder take turns here, so the first one's
    # key is everyone's (a POSIX lock: the seccomp profile allows it, not flock).
    with open(instance / ".prestart.lock", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        if "FLASK_SECRET_KEY" not in os.environ:
            make_secret_key(instance)
        try:
            version = db.migrate(app.config["DATABASE"])
        except db.SchemaTooNew as error:
            print(f"prestart: {error}", file=sys.stderr)
            return EX_SCHEMA
    print(f"prestart: database {app.config['DATABASE']} at version {version}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
