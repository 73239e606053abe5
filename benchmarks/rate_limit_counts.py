"""What counting rate-limit signals for /metrics costs (issue 21, part 3): in memory per signal, one write of the
counts, and what a write per signal would cost instead (each Jira answer near its limit writing its own count).

    DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis_bench .venv/bin/python benchmarks/rate_limit_counts.py
    .venv/bin/python benchmarks/rate_limit_counts.py        # SQLite, a file of its own in a temporary directory

It migrates the database it is given and adds rows to alm_accounts_ratelimitcount there (use a scratch database).
It prints figures; it asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kendis_integration.settings_test")
if "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/rate_limit_counts.sqlite3"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from alm_accounts import rate_limits  # noqa: E402
from alm_accounts.services import rate_limits as counting  # noqa: E402

SIGNALS = 200_000
WRITES = 200
THREADS, PER_THREAD = 4, 250

NEAR = rate_limits.read({"X-RateLimit-NearLimit": "true"}, 200)
LIMITED = rate_limits.read({"Retry-After": "2", "RateLimit-Reason": "jira-burst-based"}, 429)


def in_memory() -> float:
    """µs a Jira call pays to count one near-limit signal (the writing thread is started, as in a web worker)."""
    counting.COUNTS_WRITER.every = 3600.0  # started, but writing nothing while measured
    started = time.perf_counter()
    for _ in range(SIGNALS):
        counting.counted("cloud", NEAR)
    elapsed = time.perf_counter() - started
    counting.COUNTS_WRITER.background = False
    rate_limits.COUNTS.clear()
    return elapsed / SIGNALS * 1e6


def one_write() -> list[float]:
    """ms of each write of what a busy interval counted (two counts: near-limit signals and 429s of one reason)."""
    times = []
    for _ in range(WRITES):
        for _ in range(50):
            rate_limits.COUNTS.add("cloud", NEAR)
        rate_limits.COUNTS.add("cloud", LIMITED)
        started = time.perf_counter()
        assert counting.write_counts()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def write_per_signal() -> tuple[float, list[float]]:
    """A write per signal, THREADS at once on the same count: signals per second, and ms each call would wait."""
    waits: list[float] = []
    lock = threading.Lock()

    def calls():
        writer = counting.CountsWriter(rate_limits.Counts())
        mine = []
        for _ in range(PER_THREAD):
            writer.counts.add("cloud", NEAR)
            started = time.perf_counter()
            assert writer.write()
            mine.append((time.perf_counter() - started) * 1e3)
        connections.close_all()
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=calls) for _ in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return THREADS * PER_THREAD / (time.perf_counter() - started), waits


def ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):.2f} ms, p95 {values[int(len(values) * 0.95)]:.2f} ms"


def main() -> None:
    call_command("migrate", verbosity=0)
    print(f"Database: {connection.vendor}")
    print(f"Counting a signal in memory (what a Jira call pays): {in_memory():.2f} µs")
    print(f"One write of an interval's counts (51 signals, 2 rows): {ms(one_write())}")
    rate, waits = write_per_signal()
    print(f"A write per signal instead, {THREADS} threads on one count: {rate:.0f} signals/s at most, "
          f"each call waiting {ms(waits)}")


if __name__ == "__main__":
    main()
