"""A real webhook receiver on 127.0.0.1: an http.server thread that records what it is sent."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the receiver answered
    peer: tuple[str, int] = ("", 0)  # the sender's address and port: one per connection


@dataclass
class Receiver:
    """What the receiver got, and how it answers (``answers`` pops a status per request)."""

    url: str
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    redirect_to: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    #: Answered while ``answers`` is empty (a receiver that is down answers 503).
    default_status: int = 200
    #: Answer in HTTP/1.1, keeping the connection open for the next request (else one each).
    keep_alive: bool = False
    #: Seconds each answer waits (a slow receiver widens the window two senders could share).
    delay: float = 0.0
    #: What is being answered right now: webhook-ids, and ``order:<id>`` of order events.
    in_flight: Counter[str] = field(default_factory=Counter)
    #: Those keys that arrived while a request with the same key was still being answered.
    overlapping: list[str] = field(default_factory=list)

    def next_status(self) -> int:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default_status


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            if receiver.keep_alive:
                self.protocol_version = "HTTP/1.1"
            super().setup()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            keys = _keys(self.headers.get("webhook-id", ""), body)
            with receiver.lock:
                receiver.overlapping += [k for k in keys if receiver.in_flight[k]]
                receiver.in_flight.update(keys)
            try:
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = 302 if receiver.redirect_to else receiver.next_status()
                with receiver.lock:
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            self.client_address[:2],
                        )
                    )
            finally:
                # Done before the answer goes out: the sender may send the next one only then.
                with receiver.lock:
                    receiver.in_flight.subtract(keys)
            self.send_response(status)
            if receiver.redirect_to:
                self.send_header("Location", receiver.redirect_to)
            answer = b"x" * 5000 if status >= 500 else b"ok"
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def _keys(webhook_id: str, body: bytes) -> list[str]:
    try:
        order = json.loads(body)["data"]["order"]["id"]
    except (ValueError, KeyError, TypeError):
        return [webhook_id]
    return [webhook_id, f"order:{order}"]


def serve() -> Iterator[Receiver]:
    receiver = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


receiver_fixture: Callable[..., Iterator[Receiver]] = pytest.fixture(serve)
