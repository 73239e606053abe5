"""Keep every Jira connection alive: refresh the access tokens that expire soon.

Two kinds of grant are kept alive, by the same rules: each ALM account's own
connection (Get Auth Token) and each person's own user credential (My ALM
Credentials). An inactive person's credential is never refreshed.

Either run it as a long-running refresher (systemd, a container, a Procfile;
`make run` starts one beside the web server):

    python manage.py refresh_tokens --loop -v 1

or from cron every 5 minutes (the default window of 15 minutes leaves two
more runs before a token expires):

    */5 * * * *  cd /srv/kendis-integration && .venv/bin/python manage.py refresh_tokens -v 0

--loop runs a pass every REFRESHER_INTERVAL_SECONDS (default 300; --interval
overrides it) with ±10% jitter, so that loops started together drift apart.
Each pass is an ordinary run: same rules, same locks, its own summary
(numbered and timed). A pass that fails (the database restarting, Jira down)
is reported and the next pass tries again: the loop never ends because a pass
failed. The database connections are closed between passes (a connection left
idle for minutes may be cut by the server or a firewall). --loop refuses
--force (it would rotate every token every few minutes for nothing) and
--dry-run. Without --window, a loop's window is three intervals (at least 15
minutes); a window shorter than an interval is refused: a token could expire
between two passes.

Heartbeat: every run, and every pass of a loop, records a RefresherRun row
when it starts and completes it when it ends (host, pid, counts, outcome ok /
failed / stopped / crashed), which the ALM Accounts list shows as "Last
refresh run N minutes ago on HOST" and which lets it warn when nothing runs.
--dry-run records nothing. A database that is down cannot record the run:
that is said on stderr, and the run goes on. Each run also deletes the rows
older than HEARTBEAT_KEEP (7 days) and beyond the newest HEARTBEAT_KEEP_AT_MOST
(one DELETE). After each run or pass, alerts whose delivery is due are sent
(services.deliver_pending), unless a signal is stopping the refresher.

Several runners (hosts, loops, cron jobs) may run at once on PostgreSQL: each
grant is refreshed under its row lock, locked grants are skipped (skip_locked),
and the expiry is checked again under the lock. On SQLite refreshes are
serialised (BEGIN IMMEDIATE) and run one at a time.

LOG_FORMAT=json: every line the command writes, on stdout and on stderr, is
one JSON object (time, level, logger, pid, message), like its log records:
the start line, each grant's line, each pass's summary and the notes about
signals. Plain text otherwise.

Stopping it (SIGTERM from systemd or a Kubernetes CronJob deadline, SIGINT from
Ctrl-C): it starts no new refresh, lets every refresh in flight finish and
store Jira's new tokens, prints the summary with the number of grants left
untried and exits with 128 + the signal number. A refresh is never abandoned half-way:
Jira may already have rotated the tokens and only this process holds the new
pair, so further signals are ignored while those refreshes finish. Each is
bounded by JIRA_REFRESH_DEADLINE seconds: allow the process at least that long
before it is killed (systemd TimeoutStopSec, Kubernetes
terminationGracePeriodSeconds). A signal already ignored when the command
starts (e.g. SIGINT of a job started in the background) stays ignored. A loop
waiting between passes stops at once.

Exit codes of a single run:
    0    every grant tried, every refresh succeeded (or nothing was due)
    1    a refresh failed or a grant needs re-authorization (not: a grant
         whose account's link was removed in Jira, counted apart as "client
         refused", see services.client_refused); or the run
         itself failed (the list of grants could not be read, a refresh
         stopped unexpectedly) and the remaining grants were not tried
    2    bad arguments
    130  stopped by SIGINT before every grant was tried
    143  stopped by SIGTERM before every grant was tried

Exit codes of --loop (it only ends on a signal):
    0    stopped between passes, or during a pass that had taken every grant
    2    bad arguments (including an --account the first pass cannot find)
    130  stopped by SIGINT during a pass, before every grant was tried
    143  stopped by SIGTERM during a pass, before every grant was tried
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import math
import os
import queue
import random
import select
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from itertools import islice

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError, connection, connections, reset_queries
from django.db.models import F, Q, Subquery
from django.utils import timezone

from alm_accounts import selectors, services
from alm_accounts.models import ALMAccount, ALMCredential, RefresherRun
from alm_accounts.refresher_processes import WorkerEnded, WorkerPool
from alm_accounts.services import GrantRef, RefreshOutcome
from alm_accounts.services.common import protect_session
from kendis_integration.logs import JsonFormatter

log = logging.getLogger("alm_accounts.refresher")
ACTOR = "manage.py refresh_tokens"
MAX_CONCURRENCY = 64  # the HTTP pool per Jira host holds 64 connections
SPREAD_BLOCK, SPREAD_BATCH = 2000, 16  # see Command._spread
QUEUED_PER_THREAD = 4  # grants handed to the thread pool at a time, per thread (see Command._run)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The two kinds of grant (services.GrantRef), in the order they are listed and counted, and their names.
GRANT_KINDS = ("account", "user")
KIND_NAMES = {"account": ("account connection", "account connections"),
              "user": ("user credential", "user credentials")}
SINGLE_RUN_WINDOW = 15  # minutes: three runs of a cron job every 5 minutes
LOOP_JITTER = 0.1  # each pause of --loop is the interval ±10%: loops started together drift apart
MAX_INTERVAL = 3600  # seconds, as settings.REFRESHER_INTERVAL_SECONDS
# The heartbeat keeps a week of runs, and never more than this many rows (several loops at a short interval).
HEARTBEAT_KEEP = timedelta(days=7)
HEARTBEAT_KEEP_AT_MOST = 5000


class JsonLines(OutputWrapper):
    """The command's output as JSON lines (LOG_FORMAT=json): each write is one object, as a log record would be
    (logger alm_accounts.refresher, INFO on stdout, ERROR on stderr), so that a log shipper reads every line."""

    def __init__(self, out, *, level: int):
        super().__init__(out)
        self.level = level

    def write(self, msg="", style_func=None, ending=None):
        text = msg.rstrip("\n")
        if text.strip():
            self._out.write(json_line(text, level=self.level) + "\n")
            self._out.flush()


def json_line(text: str, *, level: int) -> str:
    return JsonFormatter().format(logging.LogRecord(log.name, level, __file__, 0, text, None, None))


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


@dataclasses.dataclass(frozen=True)
class _RunEnd:
    """How one run (or one pass of --loop) ended."""

    code: int  # the exit code a single run ends with
    stopped: bool  # a signal stopped it before every grant was tried
    counts: Counter  # results by outcome


class Heartbeat:
    """The RefresherRun row of one run: written when it starts, completed when it ends.

    Best effort: the heartbeat must never fail a refresh. A database that is
    down cannot record anything; that is said on stderr and the run goes on.
    A run whose start could not be recorded is recorded whole when it ends, if
    the database is back by then.
    """

    def __init__(self, command: Command, mode: str):
        self.command = command
        self.mode = mode
        self.started_at = timezone.now()
        self.pk: int | None = None
        try:
            self.pk = RefresherRun.objects.create(started_at=self.started_at, mode=mode, **_whoami()).pk
        except Exception as exc:  # noqa: BLE001 - reported; the run goes on
            self._not_recorded("start", exc)

    def finish(self, *, outcome: str, counts: Counter, tried: int, message: str):
        fields = {
            "finished_at": timezone.now(), "outcome": outcome, "message": message, "tried": tried,
            "refreshed": counts[RefreshOutcome.REFRESHED.value], "failed": counts[RefreshOutcome.FAILED.value],
            "needs_reauthorization": counts[RefreshOutcome.NEEDS_REAUTHORIZATION.value],
            "client_refused": counts[RefreshOutcome.CLIENT_REFUSED.value],
        }
        for attempt in (1, 2):
            try:
                if self.pk is None:
                    self.pk = RefresherRun.objects.create(started_at=self.started_at, mode=self.mode,
                                                          **_whoami(), **fields).pk
                else:
                    RefresherRun.objects.filter(pk=self.pk).update(**fields)
                prune_heartbeat()
                return
            except Exception as exc:  # noqa: BLE001 - reported; the run's own result stands
                if attempt == 1 and not connection.in_atomic_block:
                    # The pass may have failed on a connection the database dropped (a restart): a new one may work.
                    with contextlib.suppress(Exception):
                        connection.close()
                    continue
                self._not_recorded("end", exc)

    def _not_recorded(self, moment: str, exc: Exception):
        self.command.stderr.write(
            f"The {moment} of this run could not be recorded in the refresher's heartbeat ({type(exc).__name__}): "
            "the ALM Accounts list does not show it.")


def _whoami() -> dict:
    return {"host": socket.gethostname()[:255], "pid": os.getpid()}


def prune_heartbeat(*, now=None) -> int:
    """Delete the heartbeat rows older than HEARTBEAT_KEEP or beyond the newest HEARTBEAT_KEEP_AT_MOST: one DELETE."""
    now = now or timezone.now()
    beyond_newest = RefresherRun.objects.order_by("-pk").values("pk")[HEARTBEAT_KEEP_AT_MOST:HEARTBEAT_KEEP_AT_MOST + 1]
    deleted, _ = RefresherRun.objects.filter(
        Q(started_at__lt=now - HEARTBEAT_KEEP) | Q(pk__lte=Subquery(beyond_newest))).delete()
    return deleted


class Command(BaseCommand):
    help = (
        "Refresh the Jira auth tokens whose access token expires within the window: every connected ALM "
        "account's own connection and every person's own user credential (My ALM Credentials; never an "
        "inactive person's). Once (from cron), or with --loop every REFRESHER_INTERVAL_SECONDS until stopped. "
        "Jira rotates refresh tokens on every refresh; each grant is refreshed under a row lock so that "
        "parallel runs never use the same refresh token twice. Every run records its heartbeat (host, pid, counts) "
        "for the ALM Accounts list. "
        "On SIGTERM or SIGINT it starts no new refresh, lets the refreshes in flight finish and store Jira's new "
        "tokens (further signals are ignored meanwhile; each refresh ends within JIRA_REFRESH_DEADLINE seconds) "
        "and prints the summary; a loop waiting between passes stops at once. "
        "Exit codes: 0 all refreshed (a loop: stopped between passes); 1 a refresh failed, or the run failed and "
        "left grants untried; 2 bad arguments; 130 (SIGINT) or 143 (SIGTERM) stopped before every grant was tried."
    )
    # A cron job every few minutes: skip the full system checks at start.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--window", type=positive_int, default=None, metavar="MINUTES",
                            help=f"Refresh tokens expiring within this many minutes (default {SINGLE_RUN_WINDOW}; "
                                 f"with --loop, three intervals and at least {SINGLE_RUN_WINDOW}).")
        parser.add_argument("--account", action="append", default=[], metavar="NAME_OR_ID",
                            help="Only this ALM account (name or id): its own connection and its user "
                                 "credentials. Repeat for several.")
        parser.add_argument("--force", action="store_true", help="Refresh even if the token is not due.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be refreshed; change nothing.")
        parser.add_argument("--concurrency", type=positive_int, default=None, metavar="N",
                            help="Refreshes in parallel (default 8 on PostgreSQL, 1 on SQLite; at most 64).")
        parser.add_argument("--processes", type=positive_int, default=1, metavar="N",
                            help="Spread the refreshes over N worker processes (the concurrency is shared between "
                                 "them): one process uses at most one CPU core, which thousands of due grants can "
                                 "fill. Default 1; at most the number of CPU cores and the concurrency.")
        parser.add_argument("--loop", action="store_true",
                            help="Keep running: a pass every interval (with ±10%% jitter) until SIGTERM or Ctrl-C. "
                                 "For systemd, a container or a Procfile (see deploy/systemd/).")
        parser.add_argument("--interval", type=positive_int, default=None, metavar="SECONDS",
                            help="With --loop: seconds from the start of one pass to the next (default "
                                 "REFRESHER_INTERVAL_SECONDS, 300).")

    def execute(self, *args, **options):
        if settings.LOG_FORMAT == "json":
            self.stdout = JsonLines(options.pop("stdout", None) or self.stdout._out, level=logging.INFO)
            self.stderr = JsonLines(options.pop("stderr", None) or self.stderr._out, level=logging.ERROR)
            if not options.get("force_color"):
                options["no_color"] = True  # no terminal colours inside JSON
        return super().execute(*args, **options)

    def handle(self, *args, window, account, force, dry_run, concurrency, loop, interval, verbosity, processes,
               **options):
        self.verbosity = verbosity
        self._signal: int | None = None  # the first SIGTERM / SIGINT received: start no new refresh
        self._in_pass = False  # refreshes may be in flight (a loop between passes has none): see _on_signal
        self._wake_fd: int | None = None  # written by _on_signal: wakes a loop waiting for its next pass
        self._handed_out: dict[Future, tuple[str, int, str]] = {}  # see _run
        if loop:
            interval, window = self._loop_arguments(force=force, dry_run=dry_run, interval=interval, window=window)
        elif interval is not None:
            raise CommandError("--interval goes with --loop.", returncode=2)
        concurrency = self._concurrency(concurrency)
        self._processes = self._processes_for(processes, concurrency)
        if loop:
            self._loop(account=account, window=window, concurrency=concurrency, interval=interval)
            return

        due_within = None if force else timedelta(minutes=window or SINGLE_RUN_WINDOW)
        with self._stop_on_signals():
            end = self._pass(account=account, due_within=due_within, dry_run=dry_run, concurrency=concurrency,
                             mode=RefresherRun.Mode.ONCE)
        if not dry_run and self._signal is None:
            self._deliver_alerts()
        if end.code:
            raise SystemExit(end.code)

    def _pass(self, *, account, due_within, dry_run, concurrency, mode, label="") -> _RunEnd:
        """One run: refresh what is due, print its lines and summary, record its heartbeat."""
        self._contended = threading.Event()  # set once another runner is met (see _spread)
        self._failure: str | None = None  # why the run itself failed: start no new refresh
        self._tried: Counter[str] = Counter()  # grants handed to a refresh (or listed, with --dry-run), by kind
        self._dropped: Counter[str] = Counter()  # grants _spread left out (another runner refreshed them), by kind
        self._handed_out = {}
        counts: Counter[str] = Counter()  # by outcome
        kinds: Counter[str] = Counter()  # the same results, by kind of grant
        heartbeat = None if dry_run else Heartbeat(self, mode)
        self._in_pass = True  # until the last refresh has ended: a loop's signal handler tells the difference
        try:
            rows = _Counted(self._select(account, due_within))
            started = time.monotonic()
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
            self._in_pass = False
        except BaseException as exc:
            self._in_pass = False
            if heartbeat is not None:
                why = str(exc) if isinstance(exc, CommandError) else f"unexpected {type(exc).__name__}"
                heartbeat.finish(outcome="crashed", counts=counts, tried=sum(self._tried.values()),
                                 message=f"The run stopped: {why}.")
            raise

        failed = sum(n for outcome, n in counts.items() if outcome in (RefreshOutcome.FAILED.value,
                                                                        RefreshOutcome.NEEDS_REAUTHORIZATION.value))
        stopped = self._signal is not None and (untried is None or sum(untried.values()) != 0)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to refresh"
        spread = f" in {self._processes} processes" if self._processes > 1 and not dry_run else ""
        summary = f"{summary} ({_kinds(kinds, every_kind=True)}, {elapsed:.1f} s, concurrency {concurrency}{spread})."
        if stopped:
            left = "the rest" if untried is None else _kinds(untried)
            summary += f" Stopped early ({signal.Signals(self._signal).name}): {left} left untried."
        elif self._failure:
            summary += " The run failed: the rest left untried."
        elif self._signal is not None:
            summary += f" {signal.Signals(self._signal).name} came after the last grant was taken: none left untried."
        failure = (f"{self._failure[0].upper()}{self._failure[1:]}: {_kinds(kinds) or 'none'} done, the rest untried."
                   if self._failure else "")
        outcome = "crashed" if self._failure else "stopped" if stopped else "failed" if failed else "ok"
        if heartbeat is not None:
            heartbeat.finish(outcome=outcome, counts=counts, tried=sum(self._tried.values()),
                             message=f"{summary} {failure}".strip())
        # One log line per run or pass (LOG_FORMAT=json makes it a record for log shippers); never a secret.
        extra = {"outcome": outcome, "refreshed": counts[RefreshOutcome.REFRESHED.value], "failed": failed,
                 "tried": sum(self._tried.values())}
        log.log(logging.INFO if outcome == "ok" else logging.WARNING, "Refresher %s: %s %s",
                label.strip().rstrip(".") or "run", summary, failure, extra=extra)
        if self.verbosity >= 1 or failed or stopped or self._failure:
            style = self.style.ERROR if failed or stopped or self._failure else self.style.SUCCESS
            self.stdout.write(style(f"{label}Summary: {summary}"))
        if self._failure:
            self.stderr.write(self.style.ERROR(f"{label}{failure}"))
            code = 1
        elif stopped:
            code = 128 + self._signal
        else:
            code = 1 if failed else 0
        return _RunEnd(code=code, stopped=stopped, counts=counts)

    def _concurrency(self, requested: int | None) -> int:
        if requested is None:
            return default_concurrency()
        if requested > MAX_CONCURRENCY:
            raise CommandError(f"--concurrency must be at most {MAX_CONCURRENCY}.", returncode=2)
        if connection.vendor == "sqlite" and requested > 1:
            self.stderr.write("SQLite serialises refreshes: running with --concurrency 1.")
            return 1
        return requested

    def _processes_for(self, requested: int, concurrency: int) -> int:
        if requested == 1:
            return 1
        cores = os.cpu_count() or 1
        if requested > cores:
            raise CommandError(f"--processes must be at most the number of CPU cores ({cores}).", returncode=2)
        if connection.vendor == "sqlite":
            self.stderr.write("SQLite serialises refreshes: running in one process.")
            return 1
        if requested > concurrency:
            raise CommandError(f"--processes must be at most the concurrency ({concurrency}): each process runs "
                               "a share of it.", returncode=2)
        return requested

    def _deliver_alerts(self):
        """Send the alerts whose delivery is due (a retry, or one whose first delivery was missed)."""
        try:
            delivered = services.deliver_pending()
        except Exception as exc:  # noqa: BLE001 - it never raises; if it did, the refresher must go on
            self.stderr.write(f"Alerts could not be delivered ({type(exc).__name__}): the next run tries again.")
            return
        if delivered.failed or delivered.given_up:
            self.stderr.write(self.style.ERROR(f"Alerts: {delivered}."))
        elif delivered.alerts and self.verbosity >= 1:
            self.stdout.write(f"Alerts: {delivered}.")

    # --- the loop -----------------------------------------------------------------------------------------

    def _loop_arguments(self, *, force, dry_run, interval, window) -> tuple[int, int]:
        if force:
            raise CommandError("--loop refreshes only the tokens that are due: --force would rotate every token "
                               "every few minutes for nothing. Run `refresh_tokens --force` once instead.",
                               returncode=2)
        if dry_run:
            raise CommandError("--loop changes tokens: for a look at what is due, run `refresh_tokens --dry-run` "
                               "once instead.", returncode=2)
        if interval is None:
            interval = settings.REFRESHER_INTERVAL_SECONDS
        if interval > MAX_INTERVAL:
            raise CommandError(f"--interval must be at most {MAX_INTERVAL} seconds (an hour).", returncode=2)
        if window is None:
            # As a cron job every 5 minutes with its 15: two more passes before a token that was not yet due expires.
            window = max(SINGLE_RUN_WINDOW, math.ceil(3 * interval / 60))
        elif window * 60 <= interval * (1 + LOOP_JITTER):
            raise CommandError(f"--window {window} is not longer than the interval ({interval} s, ±10%): a token "
                               "could expire between two passes. Give a longer window, or leave it out.",
                               returncode=2)
        return interval, window

    def _loop(self, *, account, window, concurrency, interval):
        """A pass every `interval` seconds (±10%) until a signal; a failed pass never ends the loop."""
        due_within = timedelta(minutes=window)
        totals: Counter[str] = Counter()
        passes, end = 0, None
        wake_fd, self._wake_fd = os.pipe()
        os.set_blocking(self._wake_fd, False)  # the signal handler must never block on it
        try:
            with self._stop_on_signals():
                if self.verbosity >= 1:
                    self.stdout.write(f"Refreshing the tokens that expire within {window} minutes, every {interval} s "
                                      f"(±10%). SIGTERM or Ctrl-C stops.")
                while self._signal is None:
                    passes += 1
                    started = time.monotonic()
                    end = self._loop_pass(passes, account=account, due_within=due_within, concurrency=concurrency,
                                          interval=interval)
                    totals += end.counts
                    if self._signal is not None:
                        break
                    self._deliver_alerts()
                    self._close_connections()
                    reset_queries()  # under DEBUG the main thread's connection would keep its last 9000 queries
                    pause = interval * random.uniform(1 - LOOP_JITTER, 1 + LOOP_JITTER)  # noqa: S311 - a delay
                    self._wait(wake_fd, max(0.0, pause - (time.monotonic() - started)))
        finally:
            os.close(wake_fd)
            os.close(self._wake_fd)
            self._wake_fd = None
        self._close_connections()
        code = 128 + self._signal if end is not None and end.stopped else 0
        if self.verbosity >= 1 or code:
            done = ", ".join(f"{n} {outcome}" for outcome, n in sorted(totals.items())) or "nothing refreshed"
            self.stdout.write(f"The refresher stopped ({signal.Signals(self._signal).name}) after "
                              f"{passes} pass{'es' if passes != 1 else ''}: {done}.")
        if code:
            raise SystemExit(code)

    def _loop_pass(self, number: int, *, account, due_within, concurrency, interval) -> _RunEnd:
        label = f"Pass {number} ({timezone.localtime().strftime('%Y-%m-%d %H:%M:%S %Z')}). "
        try:
            end = self._pass(account=account, due_within=due_within, dry_run=False, concurrency=concurrency,
                             mode=RefresherRun.Mode.LOOP, label=label)
        except CommandError as exc:
            if number == 1:
                raise  # bad arguments (an --account that does not exist): say so and stop, as a single run does
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - the loop outlives a database restart; the next pass tries again
            why = f"unexpected {type(exc).__name__}"
        else:
            if self._failure is None:
                return end
            why = ""  # _pass said why
        if why:
            self.stderr.write(self.style.ERROR(f"{label}The pass stopped: {why}."))
        if self._signal is None:
            self.stderr.write(f"The next pass starts in about {interval} s.")
        return end if not why else _RunEnd(code=1, stopped=False, counts=Counter())

    def _wait(self, wake_fd: int, seconds: float):
        """Sleep `seconds`, or less: a signal writes to the wake pipe, which ends the wait at once."""
        with contextlib.suppress(InterruptedError):
            select.select([wake_fd], [], [], seconds)

    @staticmethod
    def _close_connections():
        """Close this thread's database connections: the next pass opens new ones (and so survives a restart)."""
        for wrapper in connections.all(initialized_only=True):
            with contextlib.suppress(Exception):  # a connection the database already dropped
                wrapper.close()

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
        looping = self._wake_fd is not None
        if looping and not self._in_pass:
            note = f"{name} received: the refresher stops.\n" if self._signal is None else ""
            self._signal = self._signal or signum
        elif self._signal is None:
            self._signal = signum
            # At once, not when the next refresh ends: a thread finishing its refresh would start a queued one.
            self._withdraw_queued()
            note = (f"{name} received: starting no new refresh. The refreshes in flight finish and store Jira's "
                    f"new tokens (each within {refresh_deadline():g} s), then the summary follows"
                    f"{' and the refresher stops' if looping else ''}.\n")
        else:
            note = (f"{name} received again: still waiting for the refreshes in flight. They are not interrupted: "
                    "Jira may already have replaced their tokens, and only this process holds the new ones.\n")
        # os.write, not self.stderr: the handler may run in the middle of a write to the same buffered stream,
        # which Python refuses as a reentrant call.
        with contextlib.suppress(OSError):
            if note:
                if settings.LOG_FORMAT == "json":
                    note = json_line(note.rstrip("\n"), level=logging.WARNING) + "\n"
                os.write(2, note.encode())
            if looping:
                os.write(self._wake_fd, b"\0")  # ends a wait for the next pass (see _wait)

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
                yield self._outcome(_run_now(refresh_grant_once, *item, due_within), *item)
            return

        threads_connections = []  # the database connections of the pool's threads, closed at the end

        def thread_started():
            threads_connections.extend(connections[alias] for alias in connections)

        if self._processes > 1:
            workers = WorkerPool(processes=self._processes, concurrency=concurrency)
            submit, shutdown = workers.submit, workers.shutdown
        else:
            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh_tokens",
                                      initializer=thread_started)

            def submit(*item):
                return pool.submit(refresh_one, *item)

            def shutdown():
                pool.shutdown(wait=True, cancel_futures=True)

        self._handed_out = in_flight = {}  # Future -> (kind, id, name): queued or running
        # Each future puts itself here when it is done (or withdrawn): taking the next one costs the same however
        # many are in flight, where concurrent.futures.wait would visit every one of them for each result.
        finished_futures: queue.SimpleQueue[Future] = queue.SimpleQueue()
        try:
            while True:
                while not self._halted() and len(in_flight) < QUEUED_PER_THREAD * concurrency and (
                        item := next(todo, None)) is not None:
                    future = submit(*item, due_within)
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
                self._contended.set()  # another runner is at work: see _spread
            return result
        # Not an error of the grant (those are results): something stopped the refresh itself (SystemExit,
        # KeyboardInterrupt outside our handlers, ...). Nothing more is tried.
        # A worker process that ended says which (its words are ours); anything else is named by its type only.
        error_name = str(error) if isinstance(error, WorkerEnded) else type(error).__name__
        self._failure = self._failure or f"a refresh stopped unexpectedly ({error_name}) on {name}"
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED,
                                      f"the refresh stopped unexpectedly ({error_name}); the run stops", kind=kind)

    def _line(self, text: str, *, failed: bool):
        if failed:
            self.stdout.write(self.style.ERROR(text))
        elif self.verbosity >= 1:
            self.stdout.write(text)


def refresh_one(kind: str, pk: int, name: str, due_within) -> services.RefreshResult:
    """One grant, in a thread of the pool (or of a worker process, alm_accounts.refresher_processes)."""
    try:
        # This thread's connection runs nothing but refreshes: their settings once per session, not per refresh.
        protect_session()
        return refresh_grant_once(kind, pk, name, due_within)
    finally:
        reset_queries()  # under DEBUG each thread's connection would keep its last 9000 queries


def refresh_grant_once(kind: str, pk: int, name: str, due_within) -> services.RefreshResult:
    try:
        result = services.refresh_grant(grant=GrantRef(kind, pk), actor=ACTOR, due_within=due_within,
                                        skip_locked=True)
    except Exception as exc:  # noqa: BLE001 - one broken grant must not stop the others
        return services.RefreshResult(pk, name, RefreshOutcome.FAILED, f"unexpected error ({type(exc).__name__})",
                                      kind=kind)
    if result.outcome is RefreshOutcome.BUSY:
        # Locked elsewhere, so not read: the line names the grant as listed, not by its bare id.
        result = dataclasses.replace(result, account_name=name)
    return result


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
