"""Keep every Jira connection alive: refresh the access tokens that expire soon.

Run it from cron every 5 minutes (the default window of 15 minutes leaves two
more runs before a token expires):

    */5 * * * *  cd /srv/kendis && .venv/bin/python manage.py refresh_tokens -v 0

Several runners (hosts) may run at once on PostgreSQL: each account is
refreshed under its row lock, locked accounts are skipped (skip_locked), and
the expiry is checked again under the lock. On SQLite refreshes are serialised
(BEGIN IMMEDIATE) and run one at a time.

Stopping it (SIGTERM from systemd or a Kubernetes CronJob deadline, SIGINT from
Ctrl-C): it takes no new account, lets every refresh in flight finish and store
Jira's new tokens, prints the summary with the number of accounts left untried
and exits with 128 + the signal number. A refresh is never abandoned half-way:
Jira may already have rotated the tokens and only this process holds the new
pair, so further signals are ignored while those refreshes finish. Each is
bounded by JIRA_REFRESH_DEADLINE seconds: allow the process at least that long
before it is killed (systemd TimeoutStopSec, Kubernetes
terminationGracePeriodSeconds). A signal already ignored when the command
starts (e.g. SIGINT of a job started in the background) stays ignored.

Exit codes:
    0    every account tried, every refresh succeeded (or nothing was due)
    1    a refresh failed or an account needs re-authorization; or the run
         itself failed (the list of accounts could not be read, a refresh
         stopped unexpectedly) and the remaining accounts were not tried
    2    bad arguments
    130  stopped by SIGINT before every account was tried
    143  stopped by SIGTERM before every account was tried
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, connections, reset_queries

from alm_accounts import services
from alm_accounts.models import ALMAccount
from alm_accounts.services import RefreshOutcome

ACTOR = "manage.py refresh_tokens"
MAX_CONCURRENCY = 64  # the HTTP pool per Jira host holds 64 connections
SPREAD_BLOCK, SPREAD_BATCH = 2000, 16  # see Command._spread
QUEUED_PER_THREAD = 4  # accounts handed to the thread pool at a time, per thread (see Command._run)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError
    return number


def default_concurrency() -> int:
    # SQLite has one writer at a time: parallel refreshes would only queue.
    return 1 if connection.vendor == "sqlite" else 8


def refresh_deadline() -> float:
    return getattr(settings, "JIRA_REFRESH_DEADLINE", 20)


class _Counted:
    """An iterator that counts the items taken from it (to tell how many accounts were left untried)."""

    def __init__(self, iterable):
        self._iterator = iter(iterable)
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        self.taken += 1
        return item


class Command(BaseCommand):
    help = (
        "Refresh the Jira auth tokens of connected ALM accounts whose access token expires within the window. "
        "Jira rotates refresh tokens on every refresh; each account is refreshed under a row lock so that "
        "parallel runs never use the same refresh token twice. "
        "On SIGTERM or SIGINT it takes no new account, lets the refreshes in flight finish and store Jira's new "
        "tokens (further signals are ignored meanwhile; each refresh ends within JIRA_REFRESH_DEADLINE seconds) "
        "and prints the summary. "
        "Exit codes: 0 all refreshed; 1 a refresh failed, or the run failed and left accounts untried; "
        "2 bad arguments; 130 (SIGINT) or 143 (SIGTERM) stopped before every account was tried."
    )
    # A cron job every few minutes: skip the full system checks at start.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--window", type=positive_int, default=15, metavar="MINUTES",
                            help="Refresh tokens expiring within this many minutes (default 15).")
        parser.add_argument("--account", action="append", default=[], metavar="NAME_OR_ID",
                            help="Only this ALM account (name or id). Repeat for several.")
        parser.add_argument("--force", action="store_true", help="Refresh even if the token is not due.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be refreshed; change nothing.")
        parser.add_argument("--concurrency", type=positive_int, default=None, metavar="N",
                            help="Refreshes in parallel (default 8 on PostgreSQL, 1 on SQLite; at most 64).")

    def handle(self, *args, window, account, force, dry_run, concurrency, verbosity, **options):
        concurrency = self._concurrency(concurrency)
        self.verbosity = verbosity
        self._contended = threading.Event()  # set once another runner is met (see _spread)
        self._signal: int | None = None  # the first SIGTERM / SIGINT received: take no new account
        self._failure: str | None = None  # why the run itself failed: take no new account
        self._tried = 0  # accounts handed to a refresh (or listed, with --dry-run)
        self._dropped = 0  # accounts _spread left out: another runner refreshed them
        self._handed_out: dict[Future, tuple[int, str]] = {}  # see _run
        due_within = None if force else timedelta(minutes=window)

        with self._stop_on_signals():
            rows = _Counted(self._select(account, due_within))
            started = time.monotonic()
            counts: Counter[str] = Counter()
            if dry_run:
                listing = self._read(rows)
                while not self._halted() and (row := next(listing, None)) is not None:
                    account_id, name, expires = row
                    self._tried += 1
                    # Accounts named with --account are listed whatever their state: say what a real run would do.
                    verdict = self._dry_run_verdict(account_id, due_within) if account else "would refresh"
                    self._line(f"{name}: {verdict} (expires {expires or 'unknown'})", failed=False)
                    counts[verdict] += 1
            else:
                todo = ((pk, name) for pk, name, _ in rows)
                if due_within is not None and not account:
                    todo = self._spread(todo, due_within)
                for result in self._run(self._read(todo), due_within, concurrency):
                    counts[result.outcome.value] += 1
                    text = f"{result.account_name}: {result.outcome.value}"
                    self._line(f"{text} — {result.message}" if result.message else text, failed=result.failed)
            elapsed = time.monotonic() - started
            untried = self._untried(rows) if self._signal is not None and self._failure is None else 0

        done = sum(counts.values())
        failed = sum(n for outcome, n in counts.items() if outcome in (RefreshOutcome.FAILED.value,
                                                                        RefreshOutcome.NEEDS_REAUTHORIZATION.value))
        stopped = self._signal is not None and untried != 0
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to refresh"
        summary = f"Summary: {summary} ({done} accounts, {elapsed:.1f} s, concurrency {concurrency})."
        if stopped:
            left = "the rest" if untried is None else _accounts(untried)
            summary += f" Stopped early ({signal.Signals(self._signal).name}): {left} left untried."
        elif self._failure:
            summary += " The run failed: the rest left untried."
        elif self._signal is not None:
            summary += f" {signal.Signals(self._signal).name} came after the last account was taken: none left untried."
        if verbosity >= 1 or failed or stopped or self._failure:
            style = self.style.ERROR if failed or stopped or self._failure else self.style.SUCCESS
            self.stdout.write(style(summary))
        if self._failure:
            self.stderr.write(self.style.ERROR(
                f"{self._failure[0].upper()}{self._failure[1:]}: {_accounts(done)} done, the rest untried."))
            raise SystemExit(1)
        if stopped:
            raise SystemExit(128 + self._signal)
        if failed:
            raise SystemExit(1)

    def _concurrency(self, requested: int | None) -> int:
        if requested is None:
            return default_concurrency()
        if requested > MAX_CONCURRENCY:
            raise CommandError(f"--concurrency must be at most {MAX_CONCURRENCY}.", returncode=2)
        if connection.vendor == "sqlite" and requested > 1:
            self.stderr.write("SQLite serialises refreshes: running with --concurrency 1.")
            return 1
        return requested

    # --- stopping -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """SIGTERM / SIGINT stop the run between accounts, never in the middle of a refresh.

        Python runs signal handlers in the main thread only, and only the main
        thread may install them: called from another thread (a caller's own
        thread), the caller's handling stays as it is. The previous handlers are
        restored when the run ends.
        """
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # ignored on purpose by whoever started us
                    previous[signum] = signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self._signal is None:
            self._signal = signum
            # At once, not when the next refresh ends: a thread finishing its refresh would start a queued one.
            self._withdraw_queued()
            note = (f"{name} received: taking no new accounts. The refreshes in flight finish and store Jira's new "
                    f"tokens (each within {refresh_deadline():g} s), then the summary follows.\n")
        else:
            note = (f"{name} received again: still waiting for the refreshes in flight. They are not interrupted: "
                    "Jira may already have replaced their tokens, and only this process holds the new ones.\n")
        # os.write, not self.stderr: the handler may run in the middle of a write to the same buffered stream,
        # which Python refuses as a reentrant call.
        with contextlib.suppress(OSError):
            os.write(2, note.encode())

    def _withdraw_queued(self):
        """Cancel the accounts handed to the pool that no thread has started; the running ones go on."""
        for future in list(self._handed_out):
            future.cancel()

    def _halted(self) -> bool:
        return self._signal is not None or self._failure is not None

    def _untried(self, rows: _Counted) -> int | None:
        """Accounts selected but never tried: those already read and not handed out, and the rest of the list."""
        try:
            for _ in rows:  # the rest of the list, counted by `rows`
                pass
        except Exception:  # noqa: BLE001 - only a count for the summary: "the rest" then
            return None
        return rows.taken - self._dropped - self._tried

    # --- which accounts -----------------------------------------------------------------------------------

    def _select(self, accounts: list[str], due_within: timedelta | None):
        """(id, name, expiry) of the accounts to consider, streamed from the database."""
        if accounts:
            queryset = self._named_accounts(accounts)
        elif due_within is None:
            queryset = services.refreshable_accounts()
        else:
            queryset = services.due_accounts(within=due_within)
        rows = queryset.order_by("token_expires_at", "pk").values_list("pk", "name", "token_expires_at")
        if connection.vendor == "sqlite":
            # An unfinished SQLite read keeps a lock that stops other runners from committing: read it all at once
            # (at the first account, so that a failure to read it is reported like any other, see _read).
            return _all_at_once(rows)
        return rows.iterator(chunk_size=2000)

    def _named_accounts(self, accounts: list[str]):
        ids = []
        for value in accounts:
            match = ALMAccount.objects.filter(name=value).values_list("pk", flat=True).first()
            if match is None and value.isdigit():
                match = ALMAccount.objects.filter(pk=int(value)).values_list("pk", flat=True).first()
            if match is None:
                raise CommandError(f"No ALM account named or numbered {value!r}.", returncode=2)
            ids.append(match)
        return ALMAccount.objects.filter(pk__in=ids)

    def _read(self, items):
        """The items, until the list ends or can no longer be read (then self._failure says so).

        The list is streamed from the database while refreshes run: a lost
        connection there must fail the run, not end it as if every account had
        been tried.
        """
        iterator = iter(items)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - reported as the run's failure
                self._failure = f"the list of accounts could not be read ({type(exc).__name__})"
                return
            yield item

    @staticmethod
    def _dry_run_verdict(account_id, due_within) -> str:
        if not services.refreshable_accounts().filter(pk=account_id).exists():
            return RefreshOutcome.NOT_CONNECTED.value
        if due_within is not None and not services.due_accounts(within=due_within).filter(pk=account_id).exists():
            return RefreshOutcome.NOT_DUE.value
        return "would refresh"

    def _spread(self, todo, due_within):
        """The due accounts, most urgent first; once another runner is met, shuffled and filtered.

        Runners started together (cron on several hosts) walk the same list in
        step: each would try every account and find most of them locked
        (skipped) or just refreshed, at three queries apiece. From the first
        such account on, the rest of each block of the most urgent accounts is
        shuffled, which keeps the runners apart, and one query per batch drops
        what another runner has refreshed since the list was read. A runner
        alone keeps the order. The row lock and the re-check under it decide.
        """
        shuffle = random.Random().shuffle  # noqa: S311 - an order, not a secret
        todo = iter(todo)
        while block := list(islice(todo, SPREAD_BLOCK)):
            shuffled = False
            for start in range(0, len(block), SPREAD_BATCH):
                if not self._contended.is_set():
                    yield from block[start:start + SPREAD_BATCH]
                    continue
                if not shuffled:
                    rest = block[start:]
                    shuffle(rest)
                    block[start:], shuffled = rest, True
                batch = block[start:start + SPREAD_BATCH]
                due = set(services.due_accounts(within=due_within).filter(
                    pk__in=[pk for pk, _ in batch]).values_list("pk", flat=True))
                self._dropped += sum(1 for pk, _ in batch if pk not in due)
                yield from (item for item in batch if item[0] in due)

    # --- refreshing ---------------------------------------------------------------------------------------

    def _run(self, todo, due_within, concurrency):
        """Yield a RefreshResult per account tried, taking no new account once the run is halted.

        With --concurrency 1 each refresh runs in this (the main) thread.
        Otherwise a pool of `concurrency` threads with a few accounts queued
        per thread (memory stays bounded: the list is read as it is consumed;
        the queue keeps the threads busy while this thread reads the list).
        Once the run is halted the queued accounts are withdrawn (left
        untried) and the refreshes already running are let finish.
        """
        if concurrency == 1:
            while not self._halted() and (item := next(todo, None)) is not None:
                self._tried += 1
                yield self._outcome(_run_now(self._refresh, *item, due_within), *item)
            return

        threads_connections = []  # the database connections of the pool's threads, closed at the end

        def thread_started():
            threads_connections.extend(connections[alias] for alias in connections)

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh_tokens",
                                  initializer=thread_started)
        self._handed_out = in_flight = {}  # Future -> (id, name): queued or running
        try:
            while True:
                while not self._halted() and len(in_flight) < QUEUED_PER_THREAD * concurrency and (
                        item := next(todo, None)) is not None:
                    in_flight[pool.submit(self._refresh_in_thread, *item, due_within)] = item
                    self._tried += 1
                if self._halted():
                    self._withdraw_queued()
                if not in_flight:
                    return
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = in_flight.pop(future)
                    if future.cancelled():
                        self._tried -= 1  # withdrawn before any thread took it: untried
                    else:
                        yield self._outcome(future, *item)
        finally:
            # Also when the caller stops early (an error writing a line): the refreshes in flight still finish.
            pool.shutdown(wait=True, cancel_futures=True)
            for wrapper in threads_connections:
                # The threads are gone; their connections are closed from here (Django checks the thread).
                wrapper.inc_thread_sharing()
                try:
                    with contextlib.suppress(DatabaseError):  # a connection already lost: nothing to close
                        wrapper.close()
                finally:
                    wrapper.dec_thread_sharing()

    def _outcome(self, future: Future, pk: int, name: str) -> services.RefreshResult:
        error = future.exception()
        if error is None:
            return future.result()
        # Not an error of the account (those are results): something stopped the refresh itself (SystemExit,
        # KeyboardInterrupt outside our handlers, ...). Nothing more is tried.
        kind = type(error).__name__
        self._failure = self._failure or f"a refresh stopped unexpectedly ({kind}) on {name}"
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED,
                                      f"the refresh stopped unexpectedly ({kind}); the run stops")

    def _refresh_in_thread(self, pk, name, due_within) -> services.RefreshResult:
        try:
            return self._refresh(pk, name, due_within)
        finally:
            reset_queries()  # under DEBUG each thread's connection would keep its last 9000 queries

    def _refresh(self, pk, name, due_within) -> services.RefreshResult:
        try:
            result = services.refresh_account(account_id=pk, actor=ACTOR, due_within=due_within, skip_locked=True)
        except Exception as exc:  # noqa: BLE001 - one broken account must not stop the others
            return services.RefreshResult(pk, name, RefreshOutcome.FAILED, f"unexpected error ({type(exc).__name__})")
        if result.outcome in (RefreshOutcome.BUSY, RefreshOutcome.NOT_DUE):
            self._contended.set()  # another runner is at work: see _spread
        return result

    def _line(self, text: str, *, failed: bool):
        if failed:
            self.stdout.write(self.style.ERROR(text))
        elif self.verbosity >= 1:
            self.stdout.write(text)


def _accounts(number: int) -> str:
    return f"{number} account" if number == 1 else f"{number} accounts"


def _all_at_once(rows):
    yield from list(rows)


def _run_now(function, *args) -> Future:
    """Run `function` in this thread; its result or whatever it raised, as a finished Future."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as exc:  # noqa: BLE001 - _outcome decides: the run fails
        future.set_exception(exc)
    return future
