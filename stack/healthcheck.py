"""The image's HEALTHCHECK: GET /healthz through Nginx, Gunicorn and the app; exit 0 on 200.

Python's standard library does the request, so the image needs no curl.
"""

from __future__ import annotations

import sys
import urllib.request

from stack.settings import load

TIMEOUT_SECONDS = 3


def main() -> int:
    url = f"http://127.0.0.1:{load().port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:  # URLError and HTTPError (503 while draining) included
        print(f"healthcheck: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
