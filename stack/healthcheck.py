"""The image's HEALTHCHECK: GET /healthz through Nginx, Gunicorn and the app; exit 0 on 200.

Python's standard library does the request, so the image needs no curl. With
http.client, straight to loopback: urllib would honour HTTP_PROXY and friends,
which a container behind a corporate proxy has set, and ask the proxy instead.
"""

from __future__ import annotations

import http.client
import sys

from stack.protocol import HEALTH_PATH
from stack.settings import load

TIMEOUT_SECONDS = 3
HOST = "127.0.0.1"


def main() -> int:
    port = load().port
    connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", HEALTH_PATH)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        print(f"healthcheck: http://{HOST}:{port}{HEALTH_PATH}: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:  # 503 while draining
        print(f"healthcheck: http://{HOST}:{port}{HEALTH_PATH}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
