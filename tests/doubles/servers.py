"""Real servers for tests: a free port, a process that is up before the test goes on, and stopped after; a mail
server that keeps what it is sent."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import requests

STARTUP_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(command: list[str], *, ready_url: str, log_path: Path, cwd, env: dict):
    """Start `command`, wait until `ready_url` answers, stop it when the block ends; its output goes to log_path."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command)} did not start; its log:\n{log_path.read_text()}")
            try:
                requests.get(ready_url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SMTPSink:
    """A mail server on a free local port that accepts every message (and any login) and keeps it, for tests of
    mail sent by another process (gunicorn's workers). `messages`: each message as it came over the wire."""

    def __init__(self):
        self.messages: list[str] = []
        self.logins: list[str] = []  # AUTH lines as they came (base64), to show the SMTP login was used
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 sink ESMTP")
                while line := self.rfile.readline():
                    command = line.decode("utf-8", "replace").strip()
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        sink.logins.append(command)
                        self.reply("235 2.7.0 Authentication successful")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b""):
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        sink.messages.append(b"".join(lines).decode("utf-8", "replace"))
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:  # HELO, MAIL, RCPT, RSET, NOOP
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SMTPSink:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
