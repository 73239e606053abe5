"""What the product does about Jira's and Atlassian's rate limits: counted per provider, and a Jira host (per app)
near its limit is paced, within each caller's deadline.

The headers are read by the clients (alm_accounts.rate_limits.read); jira_calls and the token refresh hand what
they read here. A 429 is waited out by the caller's own rules (jira_calls: Retry-After, at most 30 s a wait, within
its budget; a refresh: within its deadline, and never counted as a failure of the grant).

The counts (/metrics: kendis_jira_rate_limited_responses_total, kendis_jira_near_limit_responses_total) are kept
in the database (models.RateLimitCount), so that the refresher's 429s and every web worker's are in the numbers any
process serves. A near-limit signal can come with every answer of a busy Jira, so a call never writes: it adds to
this process's counts in memory (rate_limits.COUNTS), and COUNTS_WRITER adds them to the database at most once every
WRITE_EVERY_SECONDS, from a thread of its own (outside every caller's transaction), at exit, at the end of
refresh_tokens and of each of its worker processes, and before /metrics is read. A write that fails is logged once
and the counts are kept for the next one: a Jira call never fails for its count.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from datetime import UTC, datetime

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from .. import messages
from .. import rate_limits as limits_of
from ..conf import app_settings
from ..jira import Deadline, JiraClient
from ..models import Grant, RateLimitCount
from ..providers import provider_for
from ..rate_limits import RateLimit

log = logging.getLogger(__name__)

# A pacing pause leaves the call itself this much of its deadline (at least a connect).
CALL_NEEDS_SECONDS = 1.0


def observer(grant: Grant, client: JiraClient):
    """The on_limits callback of one call: counts the signal for /metrics, and paces the host when it is near."""
    provider = provider_for(grant.grant_account).metrics_name
    key = client.rate_limit_key

    def observe(limits: RateLimit) -> None:
        counted(provider, limits)
        if limits.near_limit:
            limits_of.PACING.slow_down(key, app_settings.JIRA_NEAR_LIMIT_PAUSE)
        if limits.refused:
            log.warning("Jira rate limit on %s%s: %s", grant.grant_account.name,
                        f" ({messages.rate_limited(grant, limits)})" if limits.reason else "",
                        f"asked to wait {limits.retry_after:g} s" if limits.retry_after is not None
                        else "no wait given")

    return observe


def pacing_pause(client: JiraClient, deadline: Deadline) -> float:
    """How long a call to this host (and app) waits before it is sent: what is left of the pacing set by a
    near-limit answer, at most JIRA_NEAR_LIMIT_PAUSE, and never so long that the call could not be made within its
    caller's deadline (0 then: the call goes, Jira answers 429 if it must)."""
    wait = min(limits_of.PACING.wait_for(client.rate_limit_key), app_settings.JIRA_NEAR_LIMIT_PAUSE)
    if wait <= 0 or wait + CALL_NEEDS_SECONDS > deadline.remaining():
        return 0.0
    return wait


def token_endpoint_wait(client: JiraClient) -> float:
    """Seconds this process still leaves the client's token endpoint alone, as its last 429 asked (0: none)."""
    return limits_of.TOKEN_ENDPOINTS.wait_for(client.token_rate_limit_key)


def token_endpoint_refused(client: JiraClient, limits: RateLimit | None) -> None:
    """The token endpoint answered 429: leave it alone for as long as it asked (nothing when it did not say)."""
    if limits is not None and limits.retry_after:
        limits_of.TOKEN_ENDPOINTS.slow_down(client.token_rate_limit_key, limits.retry_after)


def count(grant: Grant, limits: RateLimit | None) -> None:
    """Count a signal read outside a REST call (a token request refused with 429)."""
    if limits is not None:
        counted(provider_for(grant.grant_account).metrics_name, limits)


def counted(provider: str, limits: RateLimit) -> None:
    """Count a signal in this process's memory; COUNTS_WRITER adds it to the database within WRITE_EVERY_SECONDS."""
    if limits_of.COUNTS.add(provider, limits):
        COUNTS_WRITER.noted()


# --------------------------------------------------------------------------
# The counts, written to the database
# --------------------------------------------------------------------------

# At most one write of the counts per process in this many seconds, whatever the number of signals: a busy Jira near
# its limit marks every answer, and a write per answer would be a write per Jira call (docs/operations.md).
WRITE_EVERY_SECONDS = 5.0
# A write of the counts never waits longer than this for the database (PostgreSQL): the refresher's exit, and a
# scrape, are not held up by a stuck lock.
WRITE_TIMEOUT_MS = 5000


class CountsWriter:
    """Adds a process's counts (rate_limits.Counts) to the database: one transaction, one UPDATE of count + n per
    (signal, provider, reason) counted since the last write (an INSERT the first time), in one order so that two
    writers never deadlock. What was written is taken off the process's counts after the commit; what failed stays,
    for the next write. One write at a time in a process (a lock): nothing is written twice.

    `noted()` (after each count) starts, the first time, a daemon thread that writes within `every` seconds of a
    count, however many came meanwhile; `write()` writes now (the refresher's end, a scrape, the process's exit).
    """

    def __init__(self, counts: limits_of.Counts, *, every: float = WRITE_EVERY_SECONDS):
        self.counts = counts
        self.every = every
        self.background = True  # False: only write() writes (tests that want every write in their own thread)
        self._writing = threading.Lock()
        self._starting = threading.Lock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self._at_exit = False
        self._failing = False

    def noted(self) -> None:
        """Counts were added: have them written within `every` seconds. Never raises, never touches the database."""
        if not self.background:
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._start()
        self._due.set()

    def _start(self) -> None:
        with self._starting:
            if self._thread is not None and self._thread.is_alive():
                return
            thread = threading.Thread(target=self._run, name="rate-limit-counts", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # the interpreter is ending (or out of threads): the exit's write takes them
                return
            self._thread = thread
            if not self._at_exit:
                self._at_exit = True
                atexit.register(self.write)

    def _run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.every)  # whatever is counted meanwhile goes into this one write
            self._due.clear()
            if not self.background:
                continue  # turned off meanwhile: only write() writes (see __init__)
            try:
                self.write()
            except Exception as exc:  # noqa: BLE001 - the thread must go on counting, whatever happened
                log.warning("Rate-limit counts for /metrics: the write failed (%s).", type(exc).__name__)
            finally:
                connection.close()  # this thread's own connection: not kept open between writes seconds apart

    def write(self) -> bool:
        """Add what was counted and not yet written to the database now; False (logged once, at WARNING, until a
        write works again) when the database refused it: the counts are kept for the next write."""
        with self._writing:
            pending = self.counts.snapshot()
            if not pending:
                return True
            try:
                add_counts_to_database(pending)
            except DatabaseError as exc:
                if not self._failing:
                    self._failing = True
                    # The class only: a driver's message may name the database host and user.
                    log.warning("Rate-limit counts for /metrics could not be written to the database (%s): kept "
                                "in this process and written with the next ones.", type(exc).__name__)
                return False
            self.counts.subtract(pending)
            if self._failing:
                self._failing = False
                log.info("Rate-limit counts for /metrics written to the database again.")
            return True

    def clear(self) -> None:
        """Forget the counts not yet written and any failure met (a test's fresh start)."""
        with self._writing:
            self.counts.clear()
            self._failing = False

    def forget_in_child(self) -> None:
        """After a fork: the parent writes its counts itself; the child starts from nothing, without the parent's
        thread (which a fork does not copy) or locks (which may have been held at the fork)."""
        self.counts.clear()
        self._writing, self._starting, self._due = threading.Lock(), threading.Lock(), threading.Event()
        self._thread = None
        self._failing = False


def add_counts_to_database(pending: dict[tuple[str, str, str], tuple[int, float]]) -> None:
    """One transaction: for each (signal, provider, reason), UPDATE count = count + n; when no row was there, INSERT
    it; when another process inserted it meanwhile (IntegrityError once that one committed), UPDATE again."""
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction and connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # local to this transaction
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(WRITE_TIMEOUT_MS)])
        for (signal, provider, reason), (number, seen) in sorted(pending.items()):
            when = datetime.fromtimestamp(seen, UTC)
            row = RateLimitCount.objects.filter(provider=provider, signal=signal, reason=reason)
            added = {"count": F("count") + number, "last_seen_at": Greatest(F("last_seen_at"), Value(when))}
            if row.update(**added):
                continue
            try:
                with transaction.atomic():
                    RateLimitCount.objects.create(provider=provider, signal=signal, reason=reason, count=number,
                                                  last_seen_at=when)
            except IntegrityError:
                row.update(**added)


COUNTS_WRITER = CountsWriter(limits_of.COUNTS)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=COUNTS_WRITER.forget_in_child)


def write_counts() -> bool:
    """Write this process's rate-limit counts now (the end of refresh_tokens and of its workers; before /metrics is
    read): False when the database refused them (kept for the next write)."""
    return COUNTS_WRITER.write()
