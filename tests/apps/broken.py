"""A test app that cannot be imported: the container must fail fast."""

raise RuntimeError("this app is broken on purpose")
