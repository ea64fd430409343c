"""A project of its own, built on the stack's images (see ../Dockerfile)."""

from __future__ import annotations

import magic
from flask import Flask, Response, jsonify, request
from lxml import etree


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> Response:
        return jsonify(msg="Success!")

    @app.post("/titles")
    def titles() -> Response:
        """The <title>s of an XML document, by lxml (libxml2, bundled in its wheel)."""
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        document = etree.fromstring(request.get_data(), parser)
        return jsonify(titles=[title.text for title in document.iter("title")])

    @app.post("/type")
    def file_type() -> Response:
        """What a file is, by libmagic: a Debian library no wheel bundles."""
        return jsonify(mime=magic.from_buffer(request.get_data(), mime=True))

    return app
