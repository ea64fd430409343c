"""examples/package's factory as the module-level callable uWSGI looks for."""

from shop import create_app

app = create_app()
