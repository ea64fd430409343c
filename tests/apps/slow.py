"""A test app: the template's routes plus /slow (requests in flight), /crash and
/reject (an error of the app's own)."""

import os
import time

from flask import request

from app import create_app

app = create_app()


@app.get("/slow")
def slow() -> dict[str, float]:
    seconds = float(request.args.get("seconds", "1"))
    time.sleep(seconds)
    return {"slept": seconds}


@app.get("/crash")
def crash() -> None:
    os._exit(1)  # the worker dies mid-request, as a segfault would end it


@app.post("/reject")
def reject() -> tuple[dict[str, str], int]:
    return {"error": "name is required", "field": "name"}, 400
