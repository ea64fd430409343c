"""Native wheels in the minimal image: Pillow makes PNG thumbnails, lxml
transforms XML with XSLT (APP_MODULE app:app, the default)."""

from __future__ import annotations

import io
from pathlib import Path

from flask import Flask, Response, abort, request
from lxml import etree
from PIL import Image, UnidentifiedImageError

THUMBNAIL_SIZE = (128, 128)
# A feed's items as an HTML list.
FEED_TO_HTML = etree.XSLT(etree.parse(Path(__file__).with_name("feed.xsl")))
# No entities, no network: a request's XML cannot read files or reach out (XXE).
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()

    @app.post("/thumbnail")
    def thumbnail() -> Response:
        """The image in the request body, shrunk to fit 128 x 128, as PNG."""
        try:
            with Image.open(io.BytesIO(request.get_data())) as image:
                image.thumbnail(THUMBNAIL_SIZE)
                out = io.BytesIO()
                image.save(out, "PNG")
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
            abort(400, "the body is not an image Pillow can read")
        return Response(out.getvalue(), mimetype="image/png")

    @app.post("/feed.html")
    def feed() -> Response:
        """The RSS feed in the request body as an HTML list of its items."""
        try:
            document = etree.fromstring(request.get_data(), PARSER)
        except etree.XMLSyntaxError:
            abort(400, "the body is not well-formed XML")
        return Response(str(FEED_TO_HTML(document)), mimetype="text/html")

    return app


app = create_app()
