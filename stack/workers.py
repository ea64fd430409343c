"""Gunicorn's workers as the stack runs them: WORKER_CLASS=gthread is ThreadWorker
here, sync is SyncWorker, each a subclass that overrides a few methods of
Gunicorn's own (gunicorn/workers/gthread.py, sync.py).

TIMEOUT bounds every request. Gunicorn's `timeout` is a heartbeat of the
worker's main loop: a sync worker stuck in a request misses it and the master
kills it, but a gthread worker's loop goes on while a thread hangs, so a
handler that never returns would hold its thread for ever, and enough of them
leave a worker that is alive and serves nothing. Here, a request past TIMEOUT:
- gets the stack's JSON 504 at once (or its connection closed, if the app had
  begun its answer), and the log says which request and route it was;
- retires its worker: it takes nothing new, the master starts another at
  once, its other requests get GRACEFUL_TIMEOUT to finish, then it exits,
  hung thread and all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gunicorn import glogging, util
from gunicorn.workers import gthread, sync

from stack.logformat import Formatter
from stack.protocol import NOT_FLASK, ROUTE_HEADER, UNMATCHED, WORKER_HEADER
from stack.rundir import RunDir
from stack.scoreboard import Scoreboard

# Requests being answered, by the thread that answers them (`begin`).
IN_FLIGHT: dict[int, Flight] = {}
CURRENT: ThreadWorker | None = None  # this process's worker, if it is a ThreadWorker


@dataclass
class Flight:
    environ: dict[str, Any]
    response: Any  # Gunicorn's Response, whose start_response the app was given
    routed: bool = True  # a Werkzeug-routed (Flask) app has it
    started: float = field(default_factory=time.monotonic)

    def describe(self) -> str:
        environ = self.environ
        target = environ.get("RAW_URI") or environ.get("PATH_INFO")
        return (f"{environ.get('REQUEST_METHOD')} {target} (route {route(environ, self.routed)}, "
                f"request id {environ.get('HTTP_X_REQUEST_ID')})")


def begin(environ: dict[str, Any], start_response: Any, routed: bool) -> None:
    """Called by the stack's WSGI wrapper (stack/wsgi.py) as the app gets a request:
    TIMEOUT's clock starts, and an over-full worker closes this connection after it."""
    response = getattr(start_response, "__self__", None)  # Gunicorn's Response
    IN_FLIGHT[threading.get_ident()] = Flight(environ, response, routed)
    if CURRENT is not None and response is not None and CURRENT.over_full():
        response.force_close()
        CURRENT.shed.add(id(CURRENT.serving.get(threading.get_ident())))


def route(environ: dict[str, Any], routed: bool) -> str:
    """The URL rule a Werkzeug-routed (Flask) app matched, once it has got that far;
    for other apps, whose routes are unknown, one value for all. Never the path:
    the metrics' series stay as many as the app's rules."""
    if not routed:
        return NOT_FLASK
    rule = getattr(getattr(environ.get("werkzeug.request"), "url_rule", None), "rule", None)
    return quote(rule, safe="/<>:_-.~,=") if rule else UNMATCHED


def json_error(status: int, reason: str, request_id: str | None,
               flight: Flight | None = None) -> bytes:
    """A whole HTTP/1.1 answer in the shape of the app's and Nginx's errors; for a
    request the app had (`flight`), with its route and worker for the access log."""
    body = json.dumps({"error": reason, "status": status, "request_id": request_id}).encode()
    named = "" if flight is None else (
        f"{ROUTE_HEADER}: {route(flight.environ, flight.routed)}\r\n"
        f"{WORKER_HEADER}: {os.getpid()}\r\n")
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n{named}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status: int, reason: str, _mesg: str) -> None:
    """Gunicorn's util.write_error, as JSON (stack/gunicorn.conf.py puts it in place):
    Gunicorn has not read the request id here, the X-Request-ID header has it."""
    util.write_nonblock(sock, json_error(status, reason, None))


def answer_timeout(flight: Flight, sock: socket.socket) -> None:
    """The client's 504 now, unless the app's answer has begun; then the connection
    ends, so that Nginx never waits on it. The hung thread finds its socket shut."""
    if not getattr(flight.response, "headers_sent", True):
        with contextlib.suppress(OSError):
            sock.sendall(json_error(504, "Gateway Timeout",
                                    flight.environ.get("HTTP_X_REQUEST_ID"), flight))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def exit_now(worker: Any, code: int = 0) -> None:
    """End the process without waiting for its threads (a hung one never ends),
    having said why in the scoreboard."""
    worker_exit(None, worker)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, with TIMEOUT enforced, and taking work only for an idle thread.

    Gunicorn's gthread accepts while all its threads are busy and queues what it
    accepted, unbounded (benoitc/gunicorn#3433): a request then waits behind a
    busy worker while another idles, or, behind hung threads, for ever. Here a
    worker polls the shared socket only while a thread of its own is idle; a
    kept-alive connection that wakes while all are busy still queues, but the
    answer that finds a queue deeper than the threads says `Connection: close`,
    so that Nginx's next request opens a new connection, which an idle worker
    takes.
    """

    def init_process(self) -> None:
        self.serving: dict[int, Any] = {}  # thread -> the connection it answers on
        self.queued: dict[int, tuple[Any, Any]] = {}  # submitted, not started: conn, future
        self.timed_out: set[int] = set()  # the connections cut at TIMEOUT
        self.shed: set[int] = set()  # answered with Connection: close, to balance
        self.said_why = False  # whether it said why it takes no more work
        global CURRENT
        CURRENT = self
        super().init_process()

    @property
    def busy(self) -> int:
        """Requests in or waiting for this worker's threads."""
        return len(self.serving) + len(self.queued)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.alive and self.busy < self.cfg.threads
                                   and not self.holds_more_than_another())

    def holds_more_than_another(self, by: int = 0) -> bool:
        """Whether another worker holds more than `by` connections fewer (the scoreboard)."""
        fewest = self.scoreboard.fewest_connections(self.slot, 2 * self.cfg.workers)
        return fewest is not None and self.nr_conns > fewest + by

    def accept(self, listener: Any) -> None:
        super().accept(listener)
        self.set_accept_enabled(True)  # off, if that took the last idle thread

    def enqueue_req(self, conn: Any) -> None:
        future = self.tpool.submit(self.handle, conn)
        self.queued[id(conn)] = (conn, future)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def handle(self, conn: Any) -> Any:
        self.queued.pop(id(conn), None)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        ident = threading.get_ident()
        self.serving[ident] = conn
        self.scoreboard.busy(self.slot, len(self.serving))
        try:
            return super().handle_request(req, conn)
        finally:
            self.serving.pop(ident, None)
            IN_FLIGHT.pop(ident, None)
            self.scoreboard.busy(self.slot, len(self.serving))

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.queued.pop(id(conn), None)
        if id(conn) in self.timed_out:  # counted closed already; its thread came back
            self.timed_out.discard(id(conn))
            conn.close()
        elif fs.cancelled():  # never started: Nginx asks again on a new connection
            self.nr_conns -= 1
            conn.close()
        elif id(conn) in self.shed and fs.result() is False:
            # Shed to balance: its answer is whole and Nginx sends nothing more on
            # it, so it closes at once, not in Gunicorn's graceful close, which
            # would hold this loop until Nginx's FIN.
            self.shed.discard(id(conn))
            self.nr_conns -= 1
            conn.close()
        else:
            self.shed.discard(id(conn))
            super().finish_request(conn, fs)
        self.set_accept_enabled(True)  # a thread is idle again

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Gunicorn's main loop and its graceful stop both come by here at least
        once a second: that is where requests past TIMEOUT are found."""
        super().wait_for_and_dispatch_events(timeout)
        self.scoreboard.connections(self.slot, self.nr_conns if self.alive else None)
        self.cut_timed_out()
        if not self.alive and not self.said_why:
            self.said_why = True
            if (cause := exit_cause(self)) != "stopped":
                # Retiring of its own accord: say so, and wake the master's loop
                # as a child's exit would, so that it forks the replacement now
                # (replace_retiring), not once this one has lingered and exited.
                self.scoreboard.exiting(self.slot, cause)
                with contextlib.suppress(ProcessLookupError):  # the master is gone
                    os.kill(self.ppid, signal.SIGCHLD)

    def cut_timed_out(self) -> None:
        deadline = time.monotonic() - self.cfg.timeout
        for ident, conn in list(self.serving.items()):
            flight = IN_FLIGHT.get(ident)
            if flight is None or flight.started > deadline or id(conn) in self.timed_out:
                continue
            self.timed_out.add(id(conn))
            self.log.error("request %s ran past TIMEOUT=%d s: answered 504; this worker "
                           "is replaced once its other requests end", flight.describe(),
                           self.cfg.timeout)
            answer_timeout(flight, conn.sock)
            self.nr_conns -= 1  # closed here: the graceful stop need not wait for it
            self.retire()

    def retire(self) -> None:
        """Take nothing more; what waits for a thread goes back to Nginx, which
        sends it again on a new connection (a kept-alive one failed before any
        answer: Nginx retries, but never a POST)."""
        self.alive = False
        self.set_accept_enabled(False)
        for _conn, future in list(self.queued.values()):
            future.cancel()

    def over_full(self) -> bool:
        """Its queue deeper than its threads, or more connections than another
        worker by more than one: the answer closes its connection, and Nginx's
        next request opens another, which a worker with fewer takes."""
        return self.busy > self.cfg.threads or self.holds_more_than_another(by=1)

    def run(self) -> None:
        super().run()
        if self.serving:
            exit_now(self)  # a hung thread would hold the interpreter's exit for ever

    def handle_quit(self, sig: int, frame: Any) -> None:
        """The quick stop (after Nginx has stopped, nothing is in flight that a
        client still waits for): at once, hung threads or not."""
        self.alive = False
        self.cfg.worker_int(self)
        exit_now(self)


class SyncWorker(sync.SyncWorker):
    """The master's SIGABRT at TIMEOUT ends the request: a JSON 504, not a 500."""

    timed_out = False

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self.scoreboard.busy(self.slot, 1)
        try:
            super().handle(listener, client, addr)
        finally:  # after handle_error, which answers a request cut at TIMEOUT
            IN_FLIGHT.pop(threading.get_ident(), None)
            self.scoreboard.busy(self.slot, 0)

    def handle_abort(self, sig: int, frame: Any) -> None:
        self.timed_out = True
        flight = IN_FLIGHT.get(threading.get_ident())
        self.log.error("request %s ran past TIMEOUT=%d s: answered 504; this worker is "
                       "replaced", flight.describe() if flight else "(none)", self.cfg.timeout)
        super().handle_abort(sig, frame)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        if not (self.timed_out and isinstance(exc, SystemExit)):
            super().handle_error(req, client, addr, exc)
            return
        flight = IN_FLIGHT.get(threading.get_ident())
        with_id = flight.environ.get("HTTP_X_REQUEST_ID") if flight else None
        with contextlib.suppress(OSError):
            util.write_nonblock(client, json_error(504, "Gateway Timeout", with_id, flight))


class Logger(glogging.Logger):
    """Gunicorn's error log in the container's shape (stack/logformat.py), with the
    ids of the request it is about when a worker's thread logs it."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(Formatter("gunicorn", request_context))


def request_context() -> dict[str, Any]:
    """The ids of the request this thread serves, if it serves one: what the app's
    log records and Gunicorn's carry (stack/logformat.py)."""
    flight = IN_FLIGHT.get(threading.get_ident())
    if flight is None:
        return {}
    return {"request_id": flight.environ.get("HTTP_X_REQUEST_ID"),
            "trace_id": trace_id(flight.environ.get("HTTP_TRACEPARENT"))}


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (version-traceid-parentid-flags)."""
    parts = (traceparent or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1]
    return None


# --- the scoreboard (stack/scoreboard.py), kept by these server hooks
# (stack/gunicorn.conf.py): the master gives each worker a slot, the worker says
# how busy it is and why it exits, the master counts it when it reaps it.


def on_starting(server: Any) -> None:
    path = RunDir.from_env().scoreboard
    server.scoreboard = Scoreboard(path, create=not os.path.exists(path))
    server.scoreboard.clear_slots()
    server.replacing = 0
    manage = server.manage_workers
    server.manage_workers = lambda: replace_retiring(server, manage)


def replace_retiring(server: Any, manage: Any) -> None:
    """The master's manage_workers, with a worker that retires of its own accord
    (recycled, past TIMEOUT) replaced as it stops taking work, not once it has
    exited: it lingers up to 2 s on its kept-alive connections (Gunicorn's
    STOP_KEEPALIVE_LINGER), or GRACEFUL_TIMEOUT behind a hung thread, and until
    then the others carried all the load. One more at a time, which bounds what
    it costs in memory; Gunicorn's TTIN and TTOU still add and take away theirs."""
    early = min(server.scoreboard.retiring(), 1)
    if early != server.replacing:
        server.num_workers += early - server.replacing
        server.replacing = early
    manage()


def pre_fork(server: Any, worker: Any) -> None:
    worker.scoreboard = server.scoreboard
    worker.slot = server.scoreboard.claim({w.slot for w in server.WORKERS.values()})


def post_fork(server: Any, worker: Any) -> None:
    worker.scoreboard.started(worker.slot, os.getpid())


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, as it exits (exit_now calls it too)."""
    worker.scoreboard.exiting(worker.slot, exit_cause(worker))


def exit_cause(worker: Any) -> str:
    if getattr(worker, "timed_out", None):  # first: it may have served its last one too
        return "timeout"
    if worker.nr >= worker.max_requests:
        return "recycled"
    return "stopped"


def child_exit(server: Any, worker: Any) -> None:
    """In the master, once it reaped the worker."""
    cause = server.scoreboard.reaped(worker.slot, aborted=worker.aborted)
    if cause:
        server.log.info("worker %s replaced: %s", worker.pid, cause)
