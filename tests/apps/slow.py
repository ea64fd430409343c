"""A test app: the template's routes plus /slow (requests in flight), /crash and
/reject (an error of the app's own), /orders/<id> (a route with a variable),
/log (the app's logging and print), /fail (an unhandled exception), a /metrics
of its own on port 1300, /big (a large JSON answer), /events (server-sent
events) and /links (what url_for builds)."""

import logging
import os
import time

from flask import Response, request, stream_with_context, url_for

from app import create_app

app = create_app()
log = logging.getLogger("slow")


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


@app.get("/orders/<int:order_id>")
def order(order_id: int) -> dict[str, int]:
    return {"order": order_id}


@app.get("/log")
def log_lines() -> dict[str, str]:
    said = request.args.get("said", "hello")
    log.warning("logged: %s", said)
    app.logger.info("flask logged: %s", said)
    print(f"printed: {said}", flush=True)
    return {"said": said}


@app.get("/fail")
def fail() -> None:
    raise ZeroDivisionError("failed on purpose")


@app.get("/metrics")
def apps_own_metrics() -> str:
    return "the app's own /metrics\n"


@app.get("/big")
def big() -> dict[str, list[dict[str, object]]]:
    return {"items": [{"id": n, "name": f"item number {n}", "tags": ["a", "b"]}
                      for n in range(int(request.args.get("items", "500")))]}


@app.get("/events")
def events() -> Response:
    def stream():  # type: ignore[no-untyped-def]
        for number in range(3):
            yield f"data: event {number} at {time.monotonic()}\n\n"
            time.sleep(0.5)

    return Response(stream_with_context(stream()), mimetype="text/event-stream")


@app.get("/links")
def links() -> dict[str, str]:
    return {"index": url_for("index"), "static": url_for("static", filename="robots.txt"),
            "external": url_for("index", _external=True)}
