"""A webhook receiver on a real local socket, for the alert tests: records every POST, answers as scripted.

- `received` lists every request (path, headers, raw body) in arrival order; `bodies()` their JSON.
- `answer(status, ...)` queues answers (a 500, a redirect); when none is queued it answers 200.
- `verify(request, secret)` checks the signature as a receiver following the README would.
- `hold(until_in_flight=n)` holds each request until n are in flight at once (bounded by a timeout), so a
  test of concurrent senders can prove they overlapped; `max_in_flight` tells.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNATURE_MAX_AGE = 300  # seconds a receiver accepts between the signed timestamp and its own clock


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self):
        self.received: list[Received] = []
        self.answers: deque[tuple[int, dict]] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self._changed = threading.Condition()
        self._hold_until: int | None = None
        self._hold_timeout = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, status: int, *, headers: dict | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.answers.append((status, headers or {}))

    def hold(self, *, until_in_flight: int, timeout: float = 5.0) -> None:
        with self._changed:
            self._hold_until, self._hold_timeout = until_in_flight, timeout

    def bodies(self) -> list[dict]:
        return [request.json for request in self.received]

    @staticmethod
    def verify(request: Received, secret: str) -> bool:
        """What the README tells a receiver to do: HMAC over "<timestamp>.<raw body>", and a recent timestamp."""
        timestamp = request.headers.get("X-Kendis-Timestamp", "")
        signature = request.headers.get("X-Kendis-Signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE:
            return False
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature, f"sha256={expected}")

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._changed:
                    receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                    receiver._changed.notify_all()
                    if receiver._hold_until is not None:
                        receiver._changed.wait_for(
                            lambda: receiver._hold_until is None or receiver.in_flight >= receiver._hold_until,
                            timeout=receiver._hold_timeout)
                        receiver._hold_until = None  # held once: from now on every request is answered at once
                        receiver._changed.notify_all()
                    status, headers = receiver.answers.popleft() if receiver.answers else (200, {})
                try:
                    payload = b"ok" if status < 300 else b"<html>error</html>"
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with receiver._changed:
                        receiver.in_flight -= 1

            def log_message(self, *args):
                pass

        return Handler

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
