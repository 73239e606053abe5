"""refresh_tokens --processes N: the refreshes spread over worker processes, for hosts with several cores.

One Python process refreshes at most one core's worth: with thousands of
grants, the CPU of storing each refresh (the GIL), not Jira, sets the pace.
Each worker is a fresh Python process (spawn: it inherits no database
connection, lock or thread of the main process) that sets Django up and runs
its share of the concurrency exactly as a run's own threads do
(refresher.refresh.refresh_one: same row locks, same SKIP LOCKED, same
re-check under the lock, with the rows its refresh reads along sent with each
grant: selection.ReadAlongBatches), and sends each RefreshResult back. The main process keeps
everything else: the list of grants and its order, the lines and the summary,
the heartbeat, signals, exit codes.

A grant is handed to a worker only when one of its threads is free: until
then it waits in the main process and a stopping run can withdraw it (a
grant handed out is being refreshed). Workers ignore SIGTERM and SIGINT (a
service manager signals the whole process group): the main process decides.
When the run ends, each worker finishes the refreshes it holds (Jira may
already have rotated their tokens, and only that worker holds the new pair)
and exits once its pipe is closed; it also exits on its own when the main
process is gone. A worker that dies: its refreshes end as failures, which
stop the run (exit 1), as a thread that died would.

Nothing of Django is imported here at module level, nor in the package's
__init__: a worker imports this module before it sets Django up.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
import threading
from collections import deque
from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler


class WorkerEnded(RuntimeError):
    """A worker process ended while it held refreshes (killed, out of memory, a crash)."""


class _Worker:
    def __init__(self, process, connection, threads: int):
        self.process, self.connection, self.threads = process, connection, threads
        self.jobs: dict[int, Future] = {}  # handed to this worker, result not back yet
        self.alive = True
        self.receiver: threading.Thread | None = None


def shares(concurrency: int, processes: int) -> list[int]:
    """`concurrency` threads over `processes` workers, as evenly as possible (each at least one)."""
    base, extra = divmod(concurrency, processes)
    return [base + (i < extra) for i in range(processes)]


class WorkerPool:
    """A pool of worker processes with `concurrency` refreshes at once between them; submit() gives a Future."""

    def __init__(self, *, processes: int, concurrency: int):
        context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._pending: deque[tuple[Future, tuple]] = deque()  # not handed out yet: still withdrawable
        self._ids = itertools.count()
        self._workers: list[_Worker] = []
        for number, threads in enumerate(shares(concurrency, processes), start=1):
            ours, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(theirs, threads), name=f"refresh_tokens-{number}")
            process.start()
            theirs.close()  # only the worker's copy: its end of the pipe closes when the worker ends
            worker = _Worker(process, ours, threads)
            worker.receiver = threading.Thread(target=self._receive, args=(worker,), daemon=True,
                                               name=f"refresh_tokens-results-{number}")
            worker.receiver.start()
            self._workers.append(worker)

    def submit(self, kind: str, pk: int, name: str, due_within, read_along=None) -> Future:
        """`read_along`: the rows its refresh reads along (selection.ReadAlongBatches), sent with the grant."""
        future: Future = Future()
        with self._lock:
            self._pending.append((future, (kind, pk, name, due_within, read_along)))
            failed = self._dispatch()
        _fail(failed)
        return future

    def shutdown(self, *, cancel_futures: bool = True) -> None:
        """Withdraw what was not handed out (cancel_futures), let every worker finish what it holds, then end."""
        with self._lock:
            if cancel_futures:
                for future, _ in self._pending:
                    future.cancel()
                self._pending.clear()
        # Handed out grants are being refreshed: wait for their results before telling the workers to end.
        for worker in self._workers:
            while True:
                with self._lock:
                    held = list(worker.jobs.values())
                if not held:
                    break
                for future in held:
                    with contextlib.suppress(Exception):
                        future.exception()  # waits; the result itself is the caller's
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send(None)
        for worker in self._workers:
            worker.process.join()
            if worker.receiver is not None:
                worker.receiver.join()
            worker.connection.close()

    # --- internals ---

    def _dispatch(self) -> list[tuple[Future, Exception]]:
        """Hand waiting grants to workers with a free thread (under the lock); the futures to fail after it."""
        failed = []
        while self._pending:
            free = [w for w in self._workers if w.alive and len(w.jobs) < w.threads]
            if not free:
                if not any(w.alive for w in self._workers):
                    failed += [(f, WorkerEnded("every refresh worker process has ended")) for f, _ in self._pending
                               if f.set_running_or_notify_cancel()]
                    self._pending.clear()
                return failed
            worker = min(free, key=lambda w: len(w.jobs))
            future, job = self._pending.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # withdrawn meanwhile
            job_id = next(self._ids)
            worker.jobs[job_id] = future
            try:
                send_job(worker.connection, job_id, job)
            except (OSError, ValueError):
                worker.jobs.pop(job_id)
                worker.alive = False
                failed.append((future, WorkerEnded(f"refresh worker {worker.process.name} could not be reached")))
        return failed

    def _receive(self, worker: _Worker) -> None:
        """Results from one worker, until it ends; then whatever it still held fails."""
        while True:
            try:
                job_id, ok, payload = worker.connection.recv()
            except (EOFError, OSError, ValueError):
                break
            with self._lock:
                future = worker.jobs.pop(job_id, None)
                failed = self._dispatch()
            if future is not None:
                if ok:
                    future.set_result(payload)
                else:
                    future.set_exception(WorkerEnded(f"a refresh in {worker.process.name} raised {payload}"))
            _fail(failed)
        worker.process.join(timeout=5)
        with self._lock:
            worker.alive = False
            lost = [(future, WorkerEnded(f"refresh worker {worker.process.name} ended (exit code "
                                         f"{worker.process.exitcode})")) for future in worker.jobs.values()]
            worker.jobs.clear()
            failed = self._dispatch()
        _fail(lost + failed)


def send_job(connection, job_id: int, job: tuple) -> None:
    """Send a grant to a worker: (job id, kind, id, name, due_within, read-along rows). Rows that cannot be
    pickled (a custom user model's odd attribute) are left out rather than failing the run: the worker's locked
    read then reads them, as it does for rows read too long ago."""
    try:
        message = ForkingPickler.dumps((job_id, *job))
    except Exception:  # noqa: BLE001 - pickle raises many types; the grant itself always pickles
        message = ForkingPickler.dumps((job_id, *job[:-1], None))
    connection.send_bytes(message)  # what Connection.send does with its own pickling


def _fail(failed: list[tuple[Future, Exception]]) -> None:
    for future, error in failed:
        future.set_exception(error)


def worker_main(connection, threads: int) -> None:
    """A worker process: refresh the grants the main process sends, `threads` at once, and send each result."""
    # The main process decides when to stop; a refresh in flight here is never interrupted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import django

    django.setup()
    from concurrent.futures import ThreadPoolExecutor

    from django.db import DatabaseError, connections

    from alm_accounts.refresher.refresh import refresh_one
    from alm_accounts.services.rate_limits import write_counts

    send_lock = threading.Lock()
    threads_connections = []

    def thread_started():
        threads_connections.extend(connections[alias] for alias in connections)

    def reply(job_id: int, future: Future):
        error = future.exception()
        message = (job_id, True, future.result()) if error is None else (job_id, False, type(error).__name__)
        with send_lock, contextlib.suppress(OSError, ValueError):
            connection.send(message)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refresh_tokens", initializer=thread_started)
    try:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                break  # the main process is gone: finish what is held, then end
            if message is None:
                break
            job_id, kind, pk, name, due_within, read_along = message
            pool.submit(refresh_one, kind, pk, name, due_within, read_along).add_done_callback(
                lambda future, job_id=job_id: reply(job_id, future))
    finally:
        pool.shutdown(wait=True)
        write_counts()  # this worker's 429s, for /metrics (its memory ends with it)
        for wrapper in threads_connections:
            wrapper.inc_thread_sharing()
            try:
                with contextlib.suppress(DatabaseError):
                    wrapper.close()
            finally:
                wrapper.dec_thread_sharing()
        connection.close()
