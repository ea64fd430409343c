"""The API: `GET /` answers {"msg": "Success!"}. Replace it with your own app.

In the image Gunicorn serves `app:app` behind Nginx. `python app/app.py` runs
Flask's development server for local work (debugger only with FLASK_DEBUG=1).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_MAX_CONTENT_LENGTH=..., etc.
    app.config.update(config or {})

    @app.get("/")
    def index() -> Response:
        return jsonify(msg="Success!")

    @app.get("/whoami")
    def whoami() -> Response:
        # The client as the app sees it, through Nginx and the stack (stack/wsgi.py).
        return jsonify(client=request.remote_addr, scheme=request.scheme)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = json_error(error.code or 500, error.name)
        # Keep what the error says besides its page, such as 405's Allow.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unhandled(error: Exception) -> Response:
        app.logger.exception("unhandled error", exc_info=error)
        return json_error(500, InternalServerError.name)

    return app


def json_error(status: int, message: str) -> Response:
    """Errors have the same shape as the ones Nginx itself answers with."""
    response = jsonify(error=message, status=status, request_id=request.headers.get("X-Request-ID"))
    response.status_code = status
    return response


app = create_app()

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=1300, debug=os.environ.get("FLASK_DEBUG") == "1")
