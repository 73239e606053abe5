"""--loop: the refresher as a long-running process (systemd, a container, a Procfile, `make run`).

A pass every REFRESHER_INTERVAL_SECONDS (default 300; --interval overrides
it) with ±10% jitter, so that loops started together drift apart. Each pass
is an ordinary run: same rules, same locks, its own summary (numbered and
timed). A pass that fails (the database restarting, Jira down) is reported
and the next pass tries again: the loop never ends because a pass failed.
The database connections are closed between passes (a connection left idle
for minutes may be cut by the server or a firewall). --loop refuses --force
(it would rotate every token every few minutes for nothing) and --dry-run.
Without --window, a loop's window is three intervals (at least 15 minutes);
a window shorter than an interval is refused: a token could expire between
two passes.

Exit codes of --loop (it only ends on a signal):
    0    stopped between passes, or during a pass that had taken every grant
    2    bad arguments (including an --account the first pass cannot find)
    130  stopped by SIGINT during a pass, before every grant was tried
    143  stopped by SIGTERM during a pass, before every grant was tried
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import time
from collections import Counter
from datetime import timedelta

from django.db import connections, reset_queries
from django.utils import timezone

from alm_accounts.models import RefresherRun

from ..conf import app_settings
from .report import BadArguments, Report, RunEnd
from .run import LOOP_JITTER, Effects, Run, Stop, deliver_alerts

SINGLE_RUN_WINDOW = 15  # minutes: three runs of a cron job every 5 minutes
MAX_INTERVAL = 3600  # seconds, as the REFRESHER_INTERVAL_SECONDS setting allows


def loop_arguments(*, force: bool, dry_run: bool, interval: int | None, window: int | None) -> tuple[int, int]:
    """The interval and window of a loop, or BadArguments."""
    if force:
        raise BadArguments("--loop refreshes only the tokens that are due: --force would rotate every token "
                           "every few minutes for nothing. Run `refresh_tokens --force` once instead.")
    if dry_run:
        raise BadArguments("--loop changes tokens: for a look at what is due, run `refresh_tokens --dry-run` "
                           "once instead.")
    if interval is None:
        interval = app_settings.REFRESHER_INTERVAL_SECONDS
    if interval > MAX_INTERVAL:
        raise BadArguments(f"--interval must be at most {MAX_INTERVAL} seconds (an hour).")
    if window is None:
        # As a cron job every 5 minutes with its 15: two more passes before a token that was not yet due expires.
        window = max(SINGLE_RUN_WINDOW, math.ceil(3 * interval / 60))
    elif window * 60 <= interval * (1 + LOOP_JITTER):
        raise BadArguments(f"--window {window} is not longer than the interval ({interval} s, ±10%): a token "
                           "could expire between two passes. Give a longer window, or leave it out.")
    return interval, window


class Loop:
    """A pass every `interval` seconds (±10%) until a signal; a failed pass never ends the loop."""

    def __init__(self, *, stop: Stop, report: Report, effects: Effects, accounts: list[str], window: int,
                 interval: int, concurrency: int, processes: int, per_jira: int | None = None):
        self.stop, self.report, self.effects = stop, report, effects
        self.accounts, self.window, self.interval = accounts, window, interval
        self.concurrency, self.processes, self.per_jira = concurrency, processes, per_jira

    def run(self) -> int:
        """The exit code: 0, or 128 + the signal that stopped a pass before every grant was tried."""
        stop, report = self.stop, self.report
        totals: Counter[str] = Counter()
        passes, end = 0, None
        wake_fd, stop.wake_fd = os.pipe()
        os.set_blocking(stop.wake_fd, False)  # the signal handler must never block on it
        try:
            with stop.on_signals():
                if report.verbose:
                    report.out(f"Refreshing the tokens that expire within {self.window} minutes, every "
                               f"{self.interval} s (±10%). SIGTERM or Ctrl-C stops.")
                while stop.signal is None:
                    passes += 1
                    started = time.monotonic()
                    end = self.one_pass(passes)
                    totals += end.counts
                    if stop.signal is not None:
                        break
                    deliver_alerts(self.effects, report)
                    close_connections()
                    reset_queries()  # under DEBUG the main thread's connection would keep its last 9000 queries
                    pause = self.effects.pause(self.interval)
                    self.wait(wake_fd, max(0.0, pause - (time.monotonic() - started)))
        finally:
            os.close(wake_fd)
            os.close(stop.wake_fd)
            stop.wake_fd = None
        close_connections()
        code = 128 + stop.signal if end is not None and end.stopped else 0
        if report.verbose or code:
            done = ", ".join(f"{n} {outcome}" for outcome, n in sorted(totals.items())) or "nothing refreshed"
            report.out(f"The refresher stopped ({signal.Signals(stop.signal).name}) after "
                       f"{passes} pass{'es' if passes != 1 else ''}: {done}.")
        return code

    def one_pass(self, number: int) -> RunEnd:
        label = f"Pass {number} ({timezone.localtime().strftime('%Y-%m-%d %H:%M:%S %Z')}). "
        run = Run(stop=self.stop, report=self.report, effects=self.effects, concurrency=self.concurrency,
                  processes=self.processes, accounts=self.accounts, due_within=timedelta(minutes=self.window),
                  dry_run=False, mode=RefresherRun.Mode.LOOP, label=label, per_jira=self.per_jira)
        try:
            end = run.run()
        except BadArguments as exc:
            if number == 1:
                raise  # bad arguments (an --account that does not exist): say so and stop, as a single run does
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - the loop outlives a database restart; the next pass tries again
            why = f"unexpected {type(exc).__name__}"
        else:
            if run.failure is None:
                return end
            why = ""  # the run said why
        if why:
            self.report.err(f"{label}The pass stopped: {why}.", error=True)
        if self.stop.signal is None:
            self.report.err(f"The next pass starts in about {self.interval} s.")
        return end if not why else RunEnd(code=1, stopped=False, counts=Counter())

    @staticmethod
    def wait(wake_fd: int, seconds: float):
        """Sleep `seconds`, or less: a signal writes to the wake pipe, which ends the wait at once."""
        with contextlib.suppress(InterruptedError):
            select.select([wake_fd], [], [], seconds)


def close_connections():
    """Close this thread's database connections: the next pass opens new ones (and so survives a restart)."""
    for wrapper in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):  # a connection the database already dropped
            wrapper.close()
