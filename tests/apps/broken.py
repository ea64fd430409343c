"""A test app that cannot be imported: the container must fail fast."""

import os

DATABASE_URL = os.environ["BROKEN_APP_DATABASE_URL"]  # not set: KeyError at import
