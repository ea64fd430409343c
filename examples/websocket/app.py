"""A WebSocket echo beside an ordinary JSON route: flask-sock on the image's
gthread workers, Nginx passing the upgrade through (APP_MODULE app:app, the default).

Each open WebSocket holds one worker thread for as long as it lasts: the image
serves WEB_CONCURRENCY x THREADS of them at once, less the threads that answer
ordinary requests.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request, url_for
from flask_sock import Sock
from simple_websocket import Server


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    sock = Sock(app)

    @app.get("/")
    def index() -> Response:
        # Where to connect, as the client reached us (Host and scheme through Nginx).
        scheme = "wss" if request.is_secure else "ws"
        return jsonify(echo=url_for("echo", _external=True, _scheme=scheme))

    @sock.route("/echo")
    def echo(ws: Server) -> None:
        while True:
            ws.send(ws.receive())

    return app


app = create_app()
