"""What tests on several layers check alike: the error shape, the access log, the size budget.

Plain asserts: tests/conftest.py has pytest rewrite them, so a failure shows its values.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime

import requests

from harness.engine import Engine
from harness.images import VARIANT
from harness.server import Server
from tools.xray.engine import gzip_size

STOP_BUDGET_SECONDS = 10  # Docker's default before SIGKILL
LOG_DELAY_SECONDS = 5  # the longest an access log line may take to reach the logs here


def records(text: str) -> list[dict]:
    """The JSON records of a log, in order (a line that is not one is left out)."""
    found = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            fields = json.loads(line)
            if isinstance(fields, dict):
                found.append(fields)
    return found


def is_access_line(fields: dict) -> bool:
    return fields.get("source") == "nginx" and "status" in fields and "request_id" in fields


def log_text(server: Server) -> str:
    """What the log says, a line per record: its message, then its exception's
    text (so that a test reads `"quoted"` words as the log gives them)."""
    lines = []
    for line in server.logs().splitlines():
        try:
            fields = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(fields, dict):
            lines.append(line)
            continue
        lines.append(str(fields.get("message", "")))
        if fields.get("exception"):
            lines.append(str(fields["exception"]))
    return "\n".join(lines)


def access_log(server: Server, *waiting_for: str) -> dict[str, dict]:
    """The access log lines on the server's stdout, by request id, once the lines
    of the ids named are there (a line reaches the logs a moment after its answer)
    or LOG_DELAY_SECONDS have passed."""
    deadline = time.monotonic() + LOG_DELAY_SECONDS
    while True:
        lines = [fields for fields in records(server.logs()) if is_access_line(fields)]
        found = {line["request_id"]: line for line in lines}
        if set(waiting_for) <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def served(server: Server, since: float) -> bool:
    """The server has answered a GET / with 200 since `since` (epoch seconds): its
    log holds the runs before a restart too."""
    return any(line["uri"] == "/" and line["status"] == 200
               and datetime.fromisoformat(line["time"]).timestamp() >= since
               for line in access_log(server).values())


def wait_serving(server: Server, since: float = 0, timeout: float = 30) -> None:
    """Until a balancer sends the server a client's GET / (see `served`)."""
    deadline = time.monotonic() + timeout
    while not served(server, since):
        assert time.monotonic() < deadline, f"no request in {timeout} s:\n{server.logs()}"
        time.sleep(0.2)


def assert_contract(response: requests.Response) -> None:
    """The answer to GET /: the product's contract."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"msg": "Success!"}


def assert_json_error(response: requests.Response, status: int, gunicorn: bool = False) -> None:
    """An error in the one shape; Gunicorn's own have not read the request id."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status
    assert body["request_id"] == (None if gunicorn else response.headers["X-Request-ID"])
    assert response.headers["X-Request-ID"]


def assert_within_size_budget(engine: Engine, image: str) -> None:
    """Uncompressed as the engine reports it; compressed as xray counts it."""
    size = int(engine("image", "inspect", "--format", "{{.Size}}", image))
    compressed = gzip_size(engine, image)
    assert size <= VARIANT.max_size, f"{size:,} bytes uncompressed ({VARIANT.name})"
    assert compressed <= VARIANT.max_compressed, f"{compressed:,} bytes compressed"
