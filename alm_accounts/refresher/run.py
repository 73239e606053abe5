"""One run of the refresher (a cron run, or one pass of --loop): its state, the stop flag, the pool, the counts.

Several runners (hosts, loops, cron jobs) may run at once on PostgreSQL: each
grant is refreshed under its row lock, locked grants are skipped (skip_locked),
and the expiry is checked again under the lock. On SQLite refreshes are
serialised (BEGIN IMMEDIATE) and run one at a time.

Stopping it (SIGTERM from systemd or a Kubernetes CronJob deadline, SIGINT from
Ctrl-C): it starts no new refresh, lets every refresh in flight finish and
store Jira's new tokens, prints the summary with the number of grants left
untried and exits with 128 + the signal number. A refresh is never abandoned
half-way: Jira may already have rotated the tokens and only this process holds
the new pair, so further signals are ignored while those refreshes finish.
Each is bounded by JIRA_REFRESH_DEADLINE seconds (services.refresh_deadline).
A signal already ignored when the run starts (e.g. SIGINT of a job started in
the background) stays ignored. A loop waiting between passes stops at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

from django.db import DatabaseError, connections

from alm_accounts import services
from alm_accounts.services import RefreshOutcome
from alm_accounts.services.grants import refresh_deadline

from . import selection
from .heartbeat import Heartbeat
from .pacing import Pacer, paced_note
from .processes import WorkerEnded, WorkerPool
from .refresh import refresh_grant_once, refresh_one
from .report import BadArguments, Report, RunEnd, summarize
from .timeline import Timeline

QUEUED_PER_THREAD = 4  # grants handed to the thread pool at a time, per thread (see Run.refresh)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOOP_JITTER = 0.1  # each pause of --loop is the interval ±10%: loops started together drift apart


def deliver_pending() -> services.DeliveryCounts:
    return services.deliver_pending()  # looked up at each call: what services holds then


def jittered_pause(interval: int) -> float:
    """Seconds from the start of one pass of --loop to the next: the interval ±10%."""
    return interval * random.uniform(1 - LOOP_JITTER, 1 + LOOP_JITTER)  # noqa: S311 - a delay


@dataclasses.dataclass(frozen=True)
class Effects:
    """What a run does outside itself, given to it (tests give their own): the list of grants to consider
    (selection.select's signature), alert delivery (services.deliver_pending's), the heartbeat of a run (Heartbeat's
    signature: mode, report), and the pause of --loop between the starts of two passes (seconds, from the
    interval)."""

    select: Callable = selection.select
    deliver_alerts: Callable[[], services.DeliveryCounts] = deliver_pending
    heartbeat: Callable[[str, Report], Heartbeat] = Heartbeat
    pause: Callable[[int], float] = jittered_pause


def deliver_alerts(effects: Effects, report: Report):
    """Send the alerts whose delivery is due (a retry, or one whose first delivery was missed)."""
    try:
        delivered = effects.deliver_alerts()
    except Exception as exc:  # noqa: BLE001 - it never raises; if it did, the refresher must go on
        report.err(f"Alerts could not be delivered ({type(exc).__name__}): the next run tries again.")
        return
    if delivered.failed or delivered.given_up:
        report.err(f"Alerts: {delivered}.", error=True)
    elif delivered.alerts and report.verbose:
        report.out(f"Alerts: {delivered}.")


class Stop:
    """The stop flag: the first SIGTERM / SIGINT received, for one run or every pass of a loop."""

    def __init__(self):
        self.signal: int | None = None  # start no new refresh
        self.in_pass = False  # refreshes may be in flight (a loop between passes has none): see on_signal
        self.wake_fd: int | None = None  # written by on_signal: wakes a loop waiting for its next pass
        self.run: Run | None = None  # the run under way, whose queued grants a signal withdraws

    @contextlib.contextmanager
    def on_signals(self):
        """SIGTERM / SIGINT stop the run between refreshes, never in the middle of one.

        Python runs signal handlers in the main thread only, and only the main
        thread may install them: called from another thread (a caller's own
        thread), the caller's handling stays as it is. The previous handlers are
        restored when the run ends.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored on purpose by whoever started us
                    previous[signum] = signal.signal(signum, self.on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        looping = self.wake_fd is not None
        if looping and not self.in_pass:
            note = f"{name} received: the refresher stops.\n" if self.signal is None else ""
            self.signal = self.signal or signum
        elif self.signal is None:
            self.signal = signum
            # At once, not when the next refresh ends: a thread finishing its refresh would start a queued one.
            if self.run is not None:
                self.run.withdraw_queued()
            note = (f"{name} received: starting no new refresh. The refreshes in flight finish and store Jira's "
                    f"new tokens (each within {refresh_deadline().seconds:g} s), then the summary follows"
                    f"{' and the refresher stops' if looping else ''}.\n")
        else:
            note = (f"{name} received again: still waiting for the refreshes in flight. They are not interrupted: "
                    "Jira may already have replaced their tokens, and only this process holds the new ones.\n")
        with contextlib.suppress(OSError):
            if note:
                Report.note_now(note)
            if looping:
                os.write(self.wake_fd, b"\0")  # ends a wait for the next pass (see loop.Loop.wait)


class Run:
    """One run: refresh what is due, write its lines and summary, record its heartbeat; run() gives its RunEnd."""

    def __init__(self, *, stop: Stop, report: Report, effects: Effects, concurrency: int, processes: int,
                 accounts: list[str], due_within: timedelta | None, dry_run: bool, mode: str, label: str = "",
                 per_jira: int | None = None):
        self.stop, self.report, self.effects = stop, report, effects
        self.concurrency, self.processes = concurrency, processes
        self.accounts, self.due_within, self.dry_run, self.mode, self.label = (accounts, due_within, dry_run, mode,
                                                                               label)
        self.per_jira = per_jira  # --per-jira: every token host's limit for this run (None: each host's own)
        self.contended = threading.Event()  # set once another runner is met (see selection.spread)
        self.failure: str | None = None  # why the run itself failed: start no new refresh
        self.tried: Counter[str] = Counter()  # grants handed to a refresh (or listed, with --dry-run), by kind
        self.dropped: Counter[str] = Counter()  # grants spread left out (another runner refreshed them), by kind
        self.handed_out: dict[Future, tuple] = {}  # see refresh
        self.pacer: Pacer | None = None  # the token requests in flight per Jira host (see refresh)
        self.list_failure: str | None = None  # the list could not be read: what was read is still refreshed
        self.counts: Counter[str] = Counter()  # by outcome
        self.kept_alive = 0  # refreshes that only kept an idle grant alive
        self.kinds: Counter[str] = Counter()  # the same results, by kind of grant

    def run(self) -> RunEnd:
        heartbeat = None if self.dry_run else self.effects.heartbeat(self.mode, self.report)
        self.stop.run = self
        self.stop.in_pass = True  # until the last refresh has ended: a loop's signal handler tells the difference
        try:
            rows = selection.Counted(self.effects.select(self.accounts, self.due_within))
            started = time.monotonic()
            if self.dry_run:
                self._list(rows)
            else:
                self._refresh_all(rows)
            self.failure = self.failure or self.list_failure
            elapsed = time.monotonic() - started
            untried = self._untried(rows) if self.stop.signal is not None and self.failure is None else Counter()
            self.stop.in_pass = False
        except BaseException as exc:
            self.stop.in_pass = False
            if heartbeat is not None:
                why = str(exc) if isinstance(exc, BadArguments) else f"unexpected {type(exc).__name__}"
                heartbeat.finish(outcome="crashed", counts=self.counts, tried=sum(self.tried.values()),
                                 message=f"The run stopped: {why}.")
            raise
        summary = summarize(counts=self.counts, kinds_done=self.kinds, elapsed=elapsed, concurrency=self.concurrency,
                            processes=self.processes, dry_run=self.dry_run, signum=self.stop.signal,
                            failure=self.failure, untried=untried, kept_alive=self.kept_alive,
                            paced=paced_note(self.pacer) if self.pacer is not None else "")
        if heartbeat is not None:
            heartbeat.finish(outcome=summary.outcome, counts=self.counts, tried=sum(self.tried.values()),
                             message=f"{summary.text} {summary.failure}".strip())
        self.report.end_of_run(summary, label=self.label, refreshed=self.counts[RefreshOutcome.REFRESHED.value],
                               tried=sum(self.tried.values()))
        return RunEnd(code=summary.code, stopped=summary.stopped, counts=self.counts)

    def _list(self, rows):
        """--dry-run: each grant and what a run would do with it."""
        listing = self.read(rows)
        while not self.halted() and (row := next(listing, None)) is not None:
            kind, pk, name, expires, _host = row
            self.tried[kind] += 1
            # Grants of accounts named with --account are listed whatever their state: say what a real run would do.
            verdict = (selection.dry_run_verdict(kind, pk, self.due_within) if self.accounts
                       else "would refresh")
            self.report.grant(f"{name}: {verdict} (expires {expires or 'unknown'})", failed=False)
            self.counts[verdict] += 1
            self.kinds[kind] += 1

    def _refresh_all(self, rows):
        todo = ((kind, pk, name, host) for kind, pk, name, _, host in rows)
        if self.due_within is not None and not self.accounts:
            todo = selection.spread(todo, self.due_within, contended=self.contended, dropped=self.dropped)
        along = selection.ReadAlongBatches(concurrency=self.concurrency)
        todo = along.reading(todo)
        self.pacer = Pacer(self.read(todo), limit=self.per_jira)
        timeline = Timeline()
        try:
            for result in self.refresh(self.pacer, along):
                timeline.add(result)
                self.counts[result.outcome.value] += 1
                self.kept_alive += result.kept_alive
                self.kinds[result.kind] += 1
                text = f"{result.account_name}: {result.outcome.value}"
                self.report.grant(f"{text} — {result.message}" if result.message else text, failed=result.failed)
        finally:
            timeline.close()  # however the run ends: what its refreshes did is on their grants' days

    def withdraw_queued(self):
        """Cancel the grants handed to the pool that no thread has started; the running ones go on."""
        for future in list(self.handed_out):
            future.cancel()

    def halted(self) -> bool:
        return self.stop.signal is not None or self.failure is not None

    def _untried(self, rows: selection.Counted) -> Counter[str] | None:
        """Grants selected but never tried, by kind: those read and not handed out, and the rest of the list."""
        try:
            for _ in rows:  # the rest of the list, counted by `rows`
                pass
        except Exception:  # noqa: BLE001 - only a count for the summary: "the rest" then
            return None
        return rows.taken - self.dropped - self.tried

    def read(self, items):
        """The items, until the list ends or can no longer be read (then self.list_failure says so, and the run
        fails once the grants already read are done: the pacer reads a little ahead, see refresher.pacing).

        The list is streamed from the database while refreshes run: a lost
        connection there must fail the run, not end it as if every grant had
        been tried.
        """
        iterator = iter(items)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - reported as the run's failure
                self.list_failure = (f"the list of account connections and user credentials could not be read "
                                     f"({type(exc).__name__})")
                return
            yield item

    def refresh(self, pacer: Pacer, along: selection.ReadAlongBatches | None = None):
        """Yield a RefreshResult per grant tried, starting no new refresh once the run is halted.

        `pacer` hands out (kind, id, name, token host), at most each host's limit in flight (refresher.pacing:
        a grant counts from the moment it is handed to a thread or worker process until its result is back, so
        the limit holds across --processes); `along` has the rows their refreshes read along (read for a batch of
        grants at once, selection.ReadAlongBatches). With --concurrency 1 each refresh runs
        in this (the main) thread. Otherwise a pool of `concurrency` threads
        (or worker processes, --processes) with a few grants queued per thread
        (memory stays bounded: the list is read as it is consumed; the queue
        keeps the threads busy while this thread reads the list). Once the run
        is halted the queued grants are withdrawn (left untried) and the
        refreshes already running are let finish.
        """
        due_within, concurrency = self.due_within, self.concurrency
        if concurrency == 1:
            while not self.halted() and (item := pacer.take()) is not None:
                self.tried[item[0]] += 1
                future = _run_now(refresh_grant_once, *item[:3], due_within, along and along.take(*item[:2]))
                pacer.done(item)
                yield self._outcome(future, *item[:3])
            return

        threads_connections = []  # the database connections of the pool's threads, closed at the end

        def thread_started():
            threads_connections.extend(connections[alias] for alias in connections)

        if self.processes > 1:
            workers = WorkerPool(processes=self.processes, concurrency=concurrency)
            shutdown = workers.shutdown

            def submit(kind, pk, name, due_within):
                return workers.submit(kind, pk, name, due_within, along and along.take(kind, pk))
        else:
            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh_tokens",
                                      initializer=thread_started)

            def submit(kind, pk, name, due_within):
                return pool.submit(refresh_one, kind, pk, name, due_within, along and along.take(kind, pk))

            def shutdown():
                pool.shutdown(wait=True, cancel_futures=True)

        self.handed_out = in_flight = {}  # Future -> (kind, id, name, token host): queued or running
        # Each future puts itself here when it is done (or withdrawn): taking the next one costs the same however
        # many are in flight, where concurrent.futures.wait would visit every one of them for each result.
        finished_futures: queue.SimpleQueue[Future] = queue.SimpleQueue()
        try:
            while True:
                # Fewer in flight than threads: one is idle, worth looking further down the list for (pacing).
                while not self.halted() and len(in_flight) < QUEUED_PER_THREAD * concurrency and (
                        item := pacer.take(idle=len(in_flight) < concurrency)) is not None:
                    future = submit(*item[:3], due_within)
                    in_flight[future] = item
                    future.add_done_callback(finished_futures.put)
                    self.tried[item[0]] += 1
                if self.halted():
                    self.withdraw_queued()
                if not in_flight:
                    return
                finished = [finished_futures.get()]
                with contextlib.suppress(queue.Empty):
                    while True:
                        finished.append(finished_futures.get_nowait())
                for future in finished:
                    item = in_flight.pop(future)
                    pacer.done(item)
                    if future.cancelled():
                        self.tried[item[0]] -= 1  # withdrawn before any thread took it: untried
                    else:
                        yield self._outcome(future, *item[:3])
        finally:
            # Also when the caller stops early (an error writing a line): the refreshes in flight still finish.
            shutdown()
            for wrapper in threads_connections:
                # The threads are gone; their connections are closed from here (Django checks the thread).
                wrapper.inc_thread_sharing()
                try:
                    with contextlib.suppress(DatabaseError):  # a connection already lost: nothing to close
                        wrapper.close()
                finally:
                    wrapper.dec_thread_sharing()

    def _outcome(self, future: Future, kind: str, pk: int, name: str) -> services.RefreshResult:
        error = future.exception()
        if error is None:
            result = future.result()
            if result.outcome in (RefreshOutcome.BUSY, RefreshOutcome.NOT_DUE):
                self.contended.set()  # another runner is at work: see selection.spread
            return result
        # Not an error of the grant (those are results): something stopped the refresh itself (SystemExit,
        # KeyboardInterrupt outside our handlers, ...). Nothing more is tried.
        # A worker process that ended says which (its words are ours); anything else is named by its type only.
        error_name = str(error) if isinstance(error, WorkerEnded) else type(error).__name__
        self.failure = self.failure or f"a refresh stopped unexpectedly ({error_name}) on {name}"
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED,
                                      f"the refresh stopped unexpectedly ({error_name}); the run stops", kind=kind)


def _run_now(function, *args) -> Future:
    """Run `function` in this thread; its result or whatever it raised, as a finished Future."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as exc:  # noqa: BLE001 - _outcome decides: the run fails
        future.set_exception(exc)
    return future
