"""Keep every Jira connection alive: refresh the access tokens that expire soon.

Run it from cron every 5 minutes (the default window of 15 minutes leaves two
more runs before a token expires):

    */5 * * * *  cd /srv/kendis && .venv/bin/python manage.py refresh_tokens -v 0

Several runners (hosts) may run at once on PostgreSQL: each account is
refreshed under its row lock, locked accounts are skipped (skip_locked), and
the expiry is checked again under the lock. On SQLite refreshes are serialised
(BEGIN IMMEDIATE) and run one at a time.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from itertools import islice

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections, reset_queries

from alm_accounts import services
from alm_accounts.models import ALMAccount
from alm_accounts.services import RefreshOutcome

ACTOR = "manage.py refresh_tokens"
MAX_CONCURRENCY = 64  # the HTTP pool per Jira host holds 64 connections
SPREAD_BLOCK, SPREAD_BATCH = 2000, 16  # see Command._spread
_STOP = object()


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError
    return number


def default_concurrency() -> int:
    # SQLite has one writer at a time: parallel refreshes would only queue.
    return 1 if connection.vendor == "sqlite" else 8


class Command(BaseCommand):
    help = (
        "Refresh the Jira auth tokens of connected ALM accounts whose access token expires within the window. "
        "Jira rotates refresh tokens on every refresh; each account is refreshed under a row lock so that "
        "parallel runs never use the same refresh token twice."
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
        due_within = None if force else timedelta(minutes=window)
        ids = self._select(account, due_within)

        started = time.monotonic()
        counts: Counter[str] = Counter()
        if dry_run:
            for account_id, name, expires in ids:
                # Accounts named with --account are listed whatever their state: say what a real run would do.
                verdict = self._dry_run_verdict(account_id, due_within) if account else "would refresh"
                self._line(f"{name}: {verdict} (expires {expires or 'unknown'})", failed=False)
                counts[verdict] += 1
        else:
            pks = (pk for pk, _, _ in ids)
            if due_within is not None and not account:
                pks = self._spread(pks, due_within)
            for result in self._run(pks, due_within, concurrency):
                counts[result.outcome.value] += 1
                text = f"{result.account_name}: {result.outcome.value}"
                self._line(f"{text} — {result.message}" if result.message else text, failed=result.failed)

        elapsed = time.monotonic() - started
        failed = sum(n for outcome, n in counts.items() if outcome in (RefreshOutcome.FAILED.value,
                                                                        RefreshOutcome.NEEDS_REAUTHORIZATION.value))
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to refresh"
        if verbosity >= 1 or failed:
            style = self.style.ERROR if failed else self.style.SUCCESS
            self.stdout.write(style(f"Summary: {summary} ({sum(counts.values())} accounts, {elapsed:.1f} s, "
                                    f"concurrency {concurrency})."))
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
            # An unfinished SQLite read keeps a lock that stops other runners from committing: read it all at once.
            return list(rows)
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

    @staticmethod
    def _dry_run_verdict(account_id, due_within) -> str:
        if not services.refreshable_accounts().filter(pk=account_id).exists():
            return RefreshOutcome.NOT_CONNECTED.value
        if due_within is not None and not services.due_accounts(within=due_within).filter(pk=account_id).exists():
            return RefreshOutcome.NOT_DUE.value
        return "would refresh"

    def _run(self, ids, due_within, concurrency):
        """Yield a RefreshResult per account; `concurrency` worker threads, a bounded queue."""
        if concurrency == 1:
            for pk in ids:
                yield self._refresh(pk, due_within)
            return
        todo: queue.Queue = queue.Queue(maxsize=concurrency * 4)
        done: queue.Queue = queue.Queue()

        def worker():
            try:
                while (pk := todo.get()) is not _STOP:
                    done.put(self._refresh(pk, due_within))
                    reset_queries()  # under DEBUG each thread's connection would keep its last 9000 queries
            finally:
                connections.close_all()  # this thread's database connection
                done.put(_STOP)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        feeder = threading.Thread(target=self._feed, args=(ids, todo, concurrency), daemon=True)
        feeder.start()
        running = concurrency
        while running:
            item = done.get()
            if item is _STOP:
                running -= 1
            else:
                yield item
        feeder.join()

    def _spread(self, pks, due_within):
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
        pks = iter(pks)
        while block := list(islice(pks, SPREAD_BLOCK)):
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
                due = set(services.due_accounts(within=due_within).filter(pk__in=batch).values_list("pk", flat=True))
                yield from (pk for pk in batch if pk in due)

    @staticmethod
    def _feed(ids, todo, concurrency):
        try:
            for pk in ids:
                todo.put(pk)
        finally:
            connections.close_all()
            for _ in range(concurrency):
                todo.put(_STOP)

    def _refresh(self, pk, due_within) -> services.RefreshResult:
        try:
            result = services.refresh_account(account_id=pk, actor=ACTOR, due_within=due_within, skip_locked=True)
        except Exception as exc:  # noqa: BLE001 - one broken account must not stop the others
            return services.RefreshResult(pk, f"#{pk}", RefreshOutcome.FAILED,
                                          f"unexpected error ({type(exc).__name__})")
        if result.outcome in (RefreshOutcome.BUSY, RefreshOutcome.NOT_DUE):
            self._contended.set()  # another runner is at work: see _spread
        return result

    def _line(self, text: str, *, failed: bool):
        if failed:
            self.stdout.write(self.style.ERROR(text))
        elif self.verbosity >= 1:
            self.stdout.write(text)
