"""The refresher's heartbeat: the RefresherRun row of each run, which the ALM Accounts list shows.

Every run, and every pass of a loop, records a RefresherRun row when it starts
and completes it when it ends (host, pid, counts, outcome ok / failed /
stopped / crashed), which the ALM Accounts list shows as "Last refresh run N
minutes ago on HOST" and which lets it warn when nothing runs. --dry-run
records nothing. Each run also deletes the rows older than HEARTBEAT_KEEP
(7 days) and beyond the newest HEARTBEAT_KEEP_AT_MOST (one DELETE).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from datetime import timedelta

from django.db import connection
from django.db.models import Q, Subquery
from django.utils import timezone

from alm_accounts.models import RefresherRun
from alm_accounts.services import RefreshOutcome, history

from .report import Report

# The heartbeat keeps a week of runs, and never more than this many rows (several loops at a short interval).
HEARTBEAT_KEEP = timedelta(days=7)
HEARTBEAT_KEEP_AT_MOST = 5000


class Heartbeat:
    """The RefresherRun row of one run: written when it starts, completed when it ends.

    Best effort: the heartbeat must never fail a refresh. A database that is
    down cannot record anything; that is said on stderr and the run goes on.
    A run whose start could not be recorded is recorded whole when it ends, if
    the database is back by then.
    """

    def __init__(self, mode: str, report: Report, *, keep_at_most: int = HEARTBEAT_KEEP_AT_MOST):
        self.report = report
        self.mode = mode
        self.keep_at_most = keep_at_most
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
                prune_heartbeat(keep_at_most=self.keep_at_most)
                history.prune()  # the grants' days of refreshes older than the health timeline keeps
                return
            except Exception as exc:  # noqa: BLE001 - reported; the run's own result stands
                if attempt == 1 and not connection.in_atomic_block:
                    # The pass may have failed on a connection the database dropped (a restart): a new one may work.
                    with contextlib.suppress(Exception):
                        connection.close()
                    continue
                self._not_recorded("end", exc)

    def _not_recorded(self, moment: str, exc: Exception):
        self.report.err(
            f"The {moment} of this run could not be recorded in the refresher's heartbeat ({type(exc).__name__}): "
            "the ALM Accounts list does not show it.")


def _whoami() -> dict:
    return {"host": socket.gethostname()[:255], "pid": os.getpid()}


def prune_heartbeat(*, now=None, keep_at_most: int = HEARTBEAT_KEEP_AT_MOST) -> int:
    """Delete the heartbeat rows older than HEARTBEAT_KEEP or beyond the newest `keep_at_most`: one DELETE."""
    now = now or timezone.now()
    beyond_newest = RefresherRun.objects.order_by("-pk").values("pk")[keep_at_most:keep_at_most + 1]
    deleted, _ = RefresherRun.objects.filter(
        Q(started_at__lt=now - HEARTBEAT_KEEP) | Q(pk__lte=Subquery(beyond_newest))).delete()
    return deleted
