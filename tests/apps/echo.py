"""A test app with no framework: every request answered with what the app was
told of it, as JSON (the client, scheme and host, and every header)."""

import json


def app(environ, start_response):  # type: ignore[no-untyped-def]
    seen = {"addr": environ.get("REMOTE_ADDR"), "scheme": environ["wsgi.url_scheme"],
            "host": environ.get("HTTP_HOST"), "path": environ.get("PATH_INFO"),
            "headers": {key: value for key, value in environ.items()
                        if key.startswith("HTTP_")}}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
