"""A test app: the template's routes plus /slow, to have requests in flight."""

import time

from flask import request

from app import create_app

app = create_app()


@app.get("/slow")
def slow() -> dict[str, float]:
    seconds = float(request.args.get("seconds", "1"))
    time.sleep(seconds)
    return {"slept": seconds}
