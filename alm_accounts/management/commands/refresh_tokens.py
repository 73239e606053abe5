"""Keep every Jira connection alive: refresh the access tokens that expire soon.

Two kinds of grant are kept alive, by the same rules: each ALM account's own
connection (Get Auth Token) and each person's own user credential (My ALM
Credentials). An inactive person's credential is never refreshed.

Run it from cron every 5 minutes (the default window of 15 minutes leaves two
more runs before a token expires):

    */5 * * * *  cd /srv/kendis && .venv/bin/python manage.py refresh_tokens -v 0

Several runners (hosts) may run at once on PostgreSQL: each grant is refreshed
under its row lock, locked grants are skipped (skip_locked), and the expiry is
checked again under the lock. On SQLite refreshes are serialised (BEGIN
IMMEDIATE) and run one at a time.

Stopping it (SIGTERM from systemd or a Kubernetes CronJob deadline, SIGINT from
Ctrl-C): it starts no new refresh, lets every refresh in flight finish and
store Jira's new tokens, prints the summary with the number of grants left
untried and exits with 128 + the signal number. A refresh is never abandoned half-way:
Jira may already have rotated the tokens and only this process holds the new
pair, so further signals are ignored while those refreshes finish. Each is
bounded by JIRA_REFRESH_DEADLINE seconds: allow the process at least that long
before it is killed (systemd TimeoutStopSec, Kubernetes
terminationGracePeriodSeconds). A signal already ignored when the command
starts (e.g. SIGINT of a job started in the background) stays ignored.

Exit codes:
    0    every grant tried, every refresh succeeded (or nothing was due)
    1    a refresh failed or a grant needs re-authorization; or the run
         itself failed (the list of grants could not be read, a refresh
         stopped unexpectedly) and the remaining grants were not tried
    2    bad arguments
    130  stopped by SIGINT before every grant was tried
    143  stopped by SIGTERM before every grant was tried
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import os
import queue
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection, connections, reset_queries
from django.db.models import F

from alm_accounts import selectors, services
from alm_accounts.models import ALMAccount, ALMCredential
from alm_accounts.services import GrantRef, RefreshOutcome

ACTOR = "manage.py refresh_tokens"
MAX_CONCURRENCY = 64  # the HTTP pool per Jira host holds 64 connections
SPREAD_BLOCK, SPREAD_BATCH = 2000, 16  # see Command._spread
QUEUED_PER_THREAD = 4  # grants handed to the thread pool at a time, per thread (see Command._run)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The two kinds of grant (services.GrantRef), in the order they are listed and counted, and their names.
GRANT_KINDS = ("account", "user")
KIND_NAMES = {"account": ("account connection", "account connections"),
              "user": ("user credential", "user credentials")}


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
    """An iterator of (kind, ...) rows that counts, by kind, the rows taken (to tell what was left untried)."""

    def __init__(self, iterable):
        self._iterator = iter(iterable)
        self.taken: Counter[str] = Counter()

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._iterator)
        self.taken[item[0]] += 1
        return item


class Command(BaseCommand):
    help = (
        "Refresh the Jira auth tokens whose access token expires within the window: every connected ALM "
        "account's own connection and every person's own user credential (My ALM Credentials; never an "
        "inactive person's). "
        "Jira rotates refresh tokens on every refresh; each grant is refreshed under a row lock so that "
        "parallel runs never use the same refresh token twice. "
        "On SIGTERM or SIGINT it starts no new refresh, lets the refreshes in flight finish and store Jira's new "
        "tokens (further signals are ignored meanwhile; each refresh ends within JIRA_REFRESH_DEADLINE seconds) "
        "and prints the summary. "
        "Exit codes: 0 all refreshed; 1 a refresh failed, or the run failed and left grants untried; "
        "2 bad arguments; 130 (SIGINT) or 143 (SIGTERM) stopped before every grant was tried."
    )
    # A cron job every few minutes: skip the full system checks at start.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--window", type=positive_int, default=15, metavar="MINUTES",
                            help="Refresh tokens expiring within this many minutes (default 15).")
        parser.add_argument("--account", action="append", default=[], metavar="NAME_OR_ID",
                            help="Only this ALM account (name or id): its own connection and its user "
                                 "credentials. Repeat for several.")
        parser.add_argument("--force", action="store_true", help="Refresh even if the token is not due.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be refreshed; change nothing.")
        parser.add_argument("--concurrency", type=positive_int, default=None, metavar="N",
                            help="Refreshes in parallel (default 8 on PostgreSQL, 1 on SQLite; at most 64).")

    def handle(self, *args, window, account, force, dry_run, concurrency, verbosity, **options):
        concurrency = self._concurrency(concurrency)
        self.verbosity = verbosity
        self._contended = threading.Event()  # set once another runner is met (see _spread)
        self._signal: int | None = None  # the first SIGTERM / SIGINT received: start no new refresh
        self._failure: str | None = None  # why the run itself failed: start no new refresh
        self._tried: Counter[str] = Counter()  # grants handed to a refresh (or listed, with --dry-run), by kind
        self._dropped: Counter[str] = Counter()  # grants _spread left out (another runner refreshed them), by kind
        self._handed_out: dict[Future, tuple[str, int, str]] = {}  # see _run
        due_within = None if force else timedelta(minutes=window)

        with self._stop_on_signals():
            rows = _Counted(self._select(account, due_within))
            started = time.monotonic()
            counts: Counter[str] = Counter()  # by outcome
            kinds: Counter[str] = Counter()  # the same results, by kind of grant
            if dry_run:
                listing = self._read(rows)
                while not self._halted() and (row := next(listing, None)) is not None:
                    kind, pk, name, expires = row
                    self._tried[kind] += 1
                    # Grants of accounts named with --account are listed whatever their state: say what a real
                    # run would do.
                    verdict = self._dry_run_verdict(kind, pk, due_within) if account else "would refresh"
                    self._line(f"{name}: {verdict} (expires {expires or 'unknown'})", failed=False)
                    counts[verdict] += 1
                    kinds[kind] += 1
            else:
                todo = ((kind, pk, name) for kind, pk, name, _ in rows)
                if due_within is not None and not account:
                    todo = self._spread(todo, due_within)
                for result in self._run(self._read(todo), due_within, concurrency):
                    counts[result.outcome.value] += 1
                    kinds[result.kind] += 1
                    text = f"{result.account_name}: {result.outcome.value}"
                    self._line(f"{text} — {result.message}" if result.message else text, failed=result.failed)
            elapsed = time.monotonic() - started
            untried = self._untried(rows) if self._signal is not None and self._failure is None else Counter()

        failed = sum(n for outcome, n in counts.items() if outcome in (RefreshOutcome.FAILED.value,
                                                                        RefreshOutcome.NEEDS_REAUTHORIZATION.value))
        stopped = self._signal is not None and (untried is None or sum(untried.values()) != 0)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to refresh"
        summary = (f"Summary: {summary} ({_kinds(kinds, every_kind=True)}, {elapsed:.1f} s, "
                   f"concurrency {concurrency}).")
        if stopped:
            left = "the rest" if untried is None else _kinds(untried)
            summary += f" Stopped early ({signal.Signals(self._signal).name}): {left} left untried."
        elif self._failure:
            summary += " The run failed: the rest left untried."
        elif self._signal is not None:
            summary += f" {signal.Signals(self._signal).name} came after the last grant was taken: none left untried."
        if verbosity >= 1 or failed or stopped or self._failure:
            style = self.style.ERROR if failed or stopped or self._failure else self.style.SUCCESS
            self.stdout.write(style(summary))
        if self._failure:
            self.stderr.write(self.style.ERROR(
                f"{self._failure[0].upper()}{self._failure[1:]}: {_kinds(kinds) or 'none'} done, the rest untried."))
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
            note = (f"{name} received: starting no new refresh. The refreshes in flight finish and store Jira's "
                    f"new tokens (each within {refresh_deadline():g} s), then the summary follows.\n")
        else:
            note = (f"{name} received again: still waiting for the refreshes in flight. They are not interrupted: "
                    "Jira may already have replaced their tokens, and only this process holds the new ones.\n")
        # os.write, not self.stderr: the handler may run in the middle of a write to the same buffered stream,
        # which Python refuses as a reentrant call.
        with contextlib.suppress(OSError):
            os.write(2, note.encode())

    def _withdraw_queued(self):
        """Cancel the grants handed to the pool that no thread has started; the running ones go on."""
        for future in list(self._handed_out):
            future.cancel()

    def _halted(self) -> bool:
        return self._signal is not None or self._failure is not None

    def _untried(self, rows: _Counted) -> Counter[str] | None:
        """Grants selected but never tried, by kind: those read and not handed out, and the rest of the list."""
        try:
            for _ in rows:  # the rest of the list, counted by `rows`
                pass
        except Exception:  # noqa: BLE001 - only a count for the summary: "the rest" then
            return None
        return rows.taken - self._dropped - self._tried

    # --- which grants ------------------------------------------------------------------------------------

    def _select(self, accounts: list[str], due_within: timedelta | None):
        """(kind, id, name, expiry) of the grants to consider, most urgent first, streamed from the database.

        Two lists, each ordered by expiry (unknown first: it is due), merged as
        they are read, so that memory stays bounded however many grants there
        are. With --account: those accounts' own connections and every user
        credential on them, whatever their state (a real run says why one is
        not refreshed).
        """
        if accounts:
            ids = self._named_accounts(accounts)
            querysets = {"account": ALMAccount.objects.filter(pk__in=ids),
                         "user": ALMCredential.objects.filter(account__in=ids)}
        elif due_within is None:
            querysets = {kind: selectors.refreshable_grants(kind) for kind in GRANT_KINDS}
        else:
            querysets = {kind: selectors.due_grants(kind, within=due_within) for kind in GRANT_KINDS}
        return heapq.merge(*(_rows(kind, queryset) for kind, queryset in querysets.items()), key=_urgency)

    def _named_accounts(self, accounts: list[str]) -> list[int]:
        ids = []
        for value in accounts:
            match = ALMAccount.objects.filter(name=value).values_list("pk", flat=True).first()
            if match is None and value.isdigit():
                match = ALMAccount.objects.filter(pk=int(value)).values_list("pk", flat=True).first()
            if match is None:
                raise CommandError(f"No ALM account named or numbered {value!r}.", returncode=2)
            ids.append(match)
        return ids

    def _read(self, items):
        """The items, until the list ends or can no longer be read (then self._failure says so).

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
                self._failure = (f"the list of account connections and user credentials could not be read "
                                 f"({type(exc).__name__})")
                return
            yield item

    @staticmethod
    def _dry_run_verdict(kind: str, pk: int, due_within) -> str:
        if not selectors.refreshable_grants(kind).filter(pk=pk).exists():
            return RefreshOutcome.NOT_CONNECTED.value
        if due_within is not None and not selectors.due_grants(kind, within=due_within).filter(pk=pk).exists():
            return RefreshOutcome.NOT_DUE.value
        return "would refresh"

    def _spread(self, todo, due_within):
        """The due grants, most urgent first; once another runner is met, shuffled and filtered.

        Runners started together (cron on several hosts) walk the same list in
        step: each would try every grant and find most of them locked
        (skipped) or just refreshed, at three queries apiece. From the first
        such grant on, the rest of each block of the most urgent grants is
        shuffled, which keeps the runners apart, and one query per batch and
        kind drops what another runner has refreshed since the list was read.
        A runner alone keeps the order. The row lock and the re-check under it
        decide.
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
                due = _still_due(batch, due_within)
                self._dropped.update(kind for kind, pk, _ in batch if (kind, pk) not in due)
                yield from (item for item in batch if (item[0], item[1]) in due)

    # --- refreshing ---------------------------------------------------------------------------------------

    def _run(self, todo, due_within, concurrency):
        """Yield a RefreshResult per grant tried, starting no new refresh once the run is halted.

        `todo` yields (kind, id, name). With --concurrency 1 each refresh runs
        in this (the main) thread. Otherwise a pool of `concurrency` threads
        with a few grants queued per thread (memory stays bounded: the list is
        read as it is consumed; the queue keeps the threads busy while this
        thread reads the list). Once the run is halted the queued grants are
        withdrawn (left untried) and the refreshes already running are let
        finish.
        """
        if concurrency == 1:
            while not self._halted() and (item := next(todo, None)) is not None:
                self._tried[item[0]] += 1
                yield self._outcome(_run_now(self._refresh, *item, due_within), *item)
            return

        threads_connections = []  # the database connections of the pool's threads, closed at the end

        def thread_started():
            threads_connections.extend(connections[alias] for alias in connections)

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh_tokens",
                                  initializer=thread_started)
        self._handed_out = in_flight = {}  # Future -> (kind, id, name): queued or running
        # Each future puts itself here when it is done (or withdrawn): taking the next one costs the same however
        # many are in flight, where concurrent.futures.wait would visit every one of them for each result.
        finished_futures: queue.SimpleQueue[Future] = queue.SimpleQueue()
        try:
            while True:
                while not self._halted() and len(in_flight) < QUEUED_PER_THREAD * concurrency and (
                        item := next(todo, None)) is not None:
                    future = pool.submit(self._refresh_in_thread, *item, due_within)
                    in_flight[future] = item
                    future.add_done_callback(finished_futures.put)
                    self._tried[item[0]] += 1
                if self._halted():
                    self._withdraw_queued()
                if not in_flight:
                    return
                finished = [finished_futures.get()]
                with contextlib.suppress(queue.Empty):
                    while True:
                        finished.append(finished_futures.get_nowait())
                for future in finished:
                    item = in_flight.pop(future)
                    if future.cancelled():
                        self._tried[item[0]] -= 1  # withdrawn before any thread took it: untried
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

    def _outcome(self, future: Future, kind: str, pk: int, name: str) -> services.RefreshResult:
        error = future.exception()
        if error is None:
            return future.result()
        # Not an error of the grant (those are results): something stopped the refresh itself (SystemExit,
        # KeyboardInterrupt outside our handlers, ...). Nothing more is tried.
        error_name = type(error).__name__
        self._failure = self._failure or f"a refresh stopped unexpectedly ({error_name}) on {name}"
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED,
                                      f"the refresh stopped unexpectedly ({error_name}); the run stops", kind=kind)

    def _refresh_in_thread(self, kind, pk, name, due_within) -> services.RefreshResult:
        try:
            return self._refresh(kind, pk, name, due_within)
        finally:
            reset_queries()  # under DEBUG each thread's connection would keep its last 9000 queries

    def _refresh(self, kind, pk, name, due_within) -> services.RefreshResult:
        try:
            result = services.refresh_grant(grant=GrantRef(kind, pk), actor=ACTOR, due_within=due_within,
                                            skip_locked=True)
        except Exception as exc:  # noqa: BLE001 - one broken grant must not stop the others
            return services.RefreshResult(pk, name, RefreshOutcome.FAILED, f"unexpected error ({type(exc).__name__})",
                                          kind=kind)
        if result.outcome in (RefreshOutcome.BUSY, RefreshOutcome.NOT_DUE):
            self._contended.set()  # another runner is at work: see _spread
        if result.outcome is RefreshOutcome.BUSY:
            # Locked elsewhere, so not read: the line names the grant as listed, not by its bare id.
            result = dataclasses.replace(result, account_name=name)
        return result

    def _line(self, text: str, *, failed: bool):
        if failed:
            self.stdout.write(self.style.ERROR(text))
        elif self.verbosity >= 1:
            self.stdout.write(text)


def _kinds(counts: Counter[str], *, every_kind: bool = False) -> str:
    """Counts by kind: all ("2 account connections, 0 user credentials") or those counted ("1 user credential")."""
    parts = [f"{counts[kind]} {KIND_NAMES[kind][counts[kind] != 1]}" for kind in GRANT_KINDS
             if every_kind or counts[kind]]
    return ", ".join(parts) if every_kind else " and ".join(parts)


def _urgency(row) -> tuple:
    """The order of _rows: an unknown expiry first (it is due), then by expiry."""
    expires = row[3]
    return (0,) if expires is None else (1, expires)


def _rows(kind: str, queryset):
    """(kind, id, name, expiry) of the grants in `queryset`, by _urgency, named as in the command's lines."""
    if kind == "account":
        fields = ("pk", "name", "token_expires_at")
    else:
        fields = ("pk", "account__name", f"user__{get_user_model().USERNAME_FIELD}", "token_expires_at")
    rows = queryset.order_by(F("token_expires_at").asc(nulls_first=True), "pk").values_list(*fields)
    if connection.vendor == "sqlite":
        # An unfinished SQLite read keeps a lock that stops other runners from committing: read it all at once
        # (at the first grant, so that a failure to read it is reported like any other, see Command._read).
        rows = _all_at_once(rows)
    else:
        rows = rows.iterator(chunk_size=2000)
    for row in rows:
        if kind == "account":
            pk, name, expires = row
        else:
            pk, account_name, owner, expires = row
            name = f"{account_name} ({owner})"  # as services.grant_name names a person's credential
        yield kind, pk, name, expires


def _still_due(batch, due_within) -> set[tuple[str, int]]:
    """(kind, id) of the grants in `batch` that are still due: one query per kind present."""
    due = set()
    for kind in GRANT_KINDS:
        pks = [pk for item_kind, pk, _ in batch if item_kind == kind]
        if pks:
            due.update((kind, pk) for pk in selectors.due_grants(kind, within=due_within).filter(
                pk__in=pks).values_list("pk", flat=True))
    return due


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
