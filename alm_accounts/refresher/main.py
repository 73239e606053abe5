"""The refresher's one entry point: main(Options, report=..., effects=...) -> exit code.

`manage.py refresh_tokens` parses its arguments into Options and calls it;
so can anything else (tests give their own Effects). After a single run, and
after each pass of a loop, alerts whose delivery is due are sent
(services.deliver_pending), unless a signal is stopping the refresher. At
the end, the rate-limit counts of its refreshes are written for /metrics.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

from django.db import connection

from alm_accounts.models import RefresherRun
from alm_accounts.services.rate_limits import write_counts

from .loop import SINGLE_RUN_WINDOW, Loop, loop_arguments
from .report import BadArguments, Report
from .run import Effects, Run, Stop, deliver_alerts

MAX_CONCURRENCY = 64  # the HTTP pool per Jira host holds 64 connections


@dataclasses.dataclass(frozen=True)
class Options:
    """What `refresh_tokens` was asked to do (its arguments, by the same names)."""

    window: int | None = None  # minutes; None: SINGLE_RUN_WINDOW, or three intervals with --loop
    accounts: tuple[str, ...] = ()  # names or ids (--account): only these accounts' grants, whatever their state
    force: bool = False
    dry_run: bool = False
    concurrency: int | None = None  # None: default_concurrency()
    processes: int = 1
    per_jira: int | None = None  # None: each host's setting (REFRESH_CONCURRENCY_PER_JIRA / _ATLASSIAN)
    loop: bool = False
    interval: int | None = None  # seconds, with --loop; None: the REFRESHER_INTERVAL_SECONDS setting


def main(options: Options, *, report: Report, effects: Effects | None = None) -> int:
    """Run the refresher once, or as a loop until a signal; the exit code (report.py, loop.py). BadArguments
    for arguments it refuses (exit code 2)."""
    try:
        return _main(options, report=report, effects=effects or Effects())
    finally:
        # The 429s its token requests met, for /metrics (every web process reads them from the database); a
        # failed write is logged there and changes no exit code.
        write_counts()


def _main(options: Options, *, report: Report, effects: Effects) -> int:
    window, interval = options.window, options.interval
    if options.loop:
        interval, window = loop_arguments(force=options.force, dry_run=options.dry_run, interval=interval,
                                          window=window)
    elif interval is not None:
        raise BadArguments("--interval goes with --loop.")
    concurrency = concurrency_for(options.concurrency, report)
    processes = processes_for(options.processes, concurrency, report)
    if options.per_jira is not None and not 1 <= options.per_jira <= MAX_CONCURRENCY:
        raise BadArguments(f"--per-jira must be between 1 and {MAX_CONCURRENCY}.")
    stop = Stop()
    accounts = list(options.accounts)
    if options.loop:
        return Loop(stop=stop, report=report, effects=effects, accounts=accounts, window=window, interval=interval,
                    concurrency=concurrency, processes=processes, per_jira=options.per_jira).run()

    due_within = None if options.force else timedelta(minutes=window or SINGLE_RUN_WINDOW)
    with stop.on_signals():
        end = Run(stop=stop, report=report, effects=effects, concurrency=concurrency, processes=processes,
                  accounts=accounts, due_within=due_within, dry_run=options.dry_run,
                  mode=RefresherRun.Mode.ONCE, per_jira=options.per_jira).run()
    if not options.dry_run and stop.signal is None:
        deliver_alerts(effects, report)
    return end.code


def default_concurrency() -> int:
    # SQLite has one writer at a time: parallel refreshes would only queue.
    return 1 if connection.vendor == "sqlite" else 8


def concurrency_for(requested: int | None, report: Report) -> int:
    if requested is None:
        return default_concurrency()
    if requested > MAX_CONCURRENCY:
        raise BadArguments(f"--concurrency must be at most {MAX_CONCURRENCY}.")
    if connection.vendor == "sqlite" and requested > 1:
        report.err("SQLite serialises refreshes: running with --concurrency 1.")
        return 1
    return requested


def processes_for(requested: int, concurrency: int, report: Report) -> int:
    if requested == 1:
        return 1
    cores = os.cpu_count() or 1
    if requested > cores:
        raise BadArguments(f"--processes must be at most the number of CPU cores ({cores}).")
    if connection.vendor == "sqlite":
        report.err("SQLite serialises refreshes: running in one process.")
        return 1
    if requested > concurrency:
        raise BadArguments(f"--processes must be at most the concurrency ({concurrency}): each process runs "
                           "a share of it.")
    return requested
