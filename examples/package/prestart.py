"""Run by the image once before the server starts, in APP_DIR as the runtime user.

Brings the database up to date (seeding it once) and, unless FLASK_SECRET_KEY
is set, makes the session secret key once, in the instance folder, so that every
worker, and every replica on the same volume, signs sessions with the same key.
Any replica may run this at the same moment as another: both steps allow it.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from pathlib import Path

from shop import SECRET_KEY_FILE, create_app, db

EX_SCHEMA = 3  # the database is newer than this code: an older image was started


def make_secret_key(instance: Path) -> None:
    """Written aside, then linked into place: the first replica's key wins, whole."""
    target = instance / SECRET_KEY_FILE
    if target.exists():
        return
    fd, temporary = tempfile.mkstemp(dir=instance, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
        os.link(temporary, target)
        print(f"prestart: made a secret key in {target}", file=sys.stderr)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def main() -> int:
    app = create_app()
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
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
