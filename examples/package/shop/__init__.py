"""A small shop: an application factory, configuration from the environment, two blueprints.

In the image: APP_MODULE="shop:create_app()". Locally: `python prestart.py`, then
`flask --app shop run --debug`.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from shop import catalog, db, orders

SECRET_KEY_FILE = "secret_key"  # in the instance folder, made once by prestart.py


def create_app() -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    key_file = Path(app.instance_path, SECRET_KEY_FILE)
    app.config.from_mapping(
        DATABASE=str(Path(app.instance_path, "shop.sqlite")),
        SECRET_KEY=key_file.read_text() if key_file.is_file() else None,
    )
    # FLASK_SECRET_KEY, FLASK_DATABASE, FLASK_SESSION_COOKIE_SECURE=true, ...
    app.config.from_prefixed_env()

    db.init_app(app)
    app.register_blueprint(catalog.bp)
    app.register_blueprint(orders.bp)
    return app
