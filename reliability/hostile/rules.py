"""What every answer must be, whatever was asked, and how a run counts the answers."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from harness.rawhttp import Answer, healthy
from reliability.result import Result

# A request line Nginx takes as HTTP/0.9 (no version): the answer is the body alone.
HTTP09_LINE = re.compile(rb"[^ ]+ +[^ ]+ *")
MAX_SHOWN = 10  # broken requests the report shows


def problems(request: bytes, answer: Answer) -> list[str]:
    """The rules any answer breaks, whatever was asked: [] when it is fine.

    - An answer comes (Nginx answers every complete request, garbage too).
    - Never a 5xx: nothing a client sends is the server's fault.
    - An error is JSON whose "status" is the HTTP status and whose "request_id"
      is the X-Request-ID header, or null when Gunicorn refused the request
      before reading one (a HEAD's error has only the Content-Type).
    - The body alone (HTTP/0.9) only for a request line without a version,
      which is HTTP/0.9; it has no status to check, save one a JSON body states.
    """
    if answer.error:
        return [answer.error]
    assert answer.status is not None
    if answer.status == 0:
        first_line = request.split(b"\n", 1)[0].removesuffix(b"\r")
        found = [] if HTTP09_LINE.fullmatch(first_line) else ["no status line"]
        stated = answer.json()
        if isinstance(stated, dict) and isinstance(stated.get("status"), int) \
                and stated["status"] >= 500:
            found.append(f"HTTP/0.9 body states {stated['status']}")
        return found
    found = [f"{answer.status} is a 5xx"] if answer.status >= 500 else []
    if answer.status >= 400:
        if not json_typed(answer):
            content_type = answer.headers.get("Content-Type") or "no Content-Type"
            found.append(f"error as {content_type}: {answer.body[:80]!r}")
        elif not request.startswith(b"HEAD "):
            body = answer.json()
            if not isinstance(body, dict) or body.get("status") != answer.status:
                found.append(f"error body without status {answer.status}: {answer.body[:80]!r}")
            elif body.get("request_id") not in (answer.headers.get("X-Request-ID"), None):
                found.append("error body's request_id is not the X-Request-ID header")
    return found


def json_typed(answer: Answer) -> bool:
    return answer.headers.get("Content-Type", "").startswith("application/json")


@dataclass
class Tally:
    """Counts answers into a Result: every request sent, by answer, and what broke."""

    result: Result
    seen: Counter[str] = field(default_factory=Counter)
    broken: list[str] = field(default_factory=list)

    def add(self, what: str, answer: Answer, found: list[str]) -> None:
        self.result.sent += 1
        self.seen[answer.label()] += 1
        if found:
            self.result.failed += 1
            if len(self.broken) < MAX_SHOWN:
                self.broken.append(f"{what} -> {'; '.join(found)}")

    def close(self, base_url: str) -> Result:
        """The figures and the checks both runs share, after a last /healthz."""
        self.result.figures.update({f"answered {label}": n
                                    for label, n in sorted(self.seen.items())})
        if self.broken:
            self.result.figures["broken"] = " | ".join(self.broken)
        self.result.sent += 1
        self.result.check("/healthz answers 200 after", healthy(base_url))
        self.result.check("no 5xx", not any(label.startswith("5") for label in self.seen))
        return self.result
