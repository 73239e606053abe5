"""Real servers for tests: a free port, a process that is up before the test goes on, and stopped after."""

from __future__ import annotations

import contextlib
import socket
import subprocess
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
