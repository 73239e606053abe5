"""Keep every Jira connection alive: refresh the access tokens that expire soon (a shell around the refresher).

Two kinds of grant are kept alive, by the same rules: each ALM account's own
connection (Get Auth Token) and each person's own user credential (My ALM
Credentials). An inactive person's credential is never refreshed.

Either run it as a long-running refresher (systemd, a container, a Procfile;
`make run` starts one beside the web server):

    python manage.py refresh_tokens --loop -v 1

or from cron every 5 minutes (the default window of 15 minutes leaves two
more runs before a token expires):

    */5 * * * *  cd /srv/kendis-integration && .venv/bin/python manage.py refresh_tokens -v 0

The work is done by the engine, alm_accounts/refresher/ (see its __init__):
the loop (loop.py), the heartbeat (heartbeat.py), several runners at once and
signals (run.py), JSON lines and exit codes (report.py). This command parses
the arguments, chooses where the lines go (plain or LOG_FORMAT=json) and calls
refresher.main.main.

Exit codes of a single run:
    0    every grant tried, every refresh succeeded (or nothing was due)
    1    a refresh failed or a grant needs re-authorization; or the run itself
         failed and the remaining grants were not tried
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

import logging
import sys

from django.core.management.base import BaseCommand, CommandError

from alm_accounts.refresher.loop import SINGLE_RUN_WINDOW
from alm_accounts.refresher.main import Options, main
from alm_accounts.refresher.report import BAD_ARGUMENTS, BadArguments, JsonLines, Report, json_output
from alm_accounts.refresher.run import Effects


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError
    return number


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

    def __init__(self, stdout=None, stderr=None, no_color=False, force_color=False, *, effects: Effects | None = None):
        super().__init__(stdout=stdout, stderr=stderr, no_color=no_color, force_color=force_color)
        self.streams = (stdout or sys.stdout, stderr or sys.stderr)  # where JSON lines go (LOG_FORMAT=json)
        self.effects = effects  # the engine's side effects; None: the real ones (tests give their own)

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
        parser.add_argument("--per-jira", type=positive_int, default=None, metavar="N",
                            help="At most N token requests in flight to any one Jira host (Data Center: the base "
                                 "URL's host; Jira Cloud: Atlassian's token endpoint) while the rest of the "
                                 "concurrency serves other Jiras. Default REFRESH_CONCURRENCY_PER_JIRA (4), and "
                                 "REFRESH_CONCURRENCY_ATLASSIAN (8) for Jira Cloud; at most 64.")
        parser.add_argument("--loop", action="store_true",
                            help="Keep running: a pass every interval (with ±10%% jitter) until SIGTERM or Ctrl-C. "
                                 "For systemd, a container or a Procfile (see deploy/systemd/).")
        parser.add_argument("--interval", type=positive_int, default=None, metavar="SECONDS",
                            help="With --loop: seconds from the start of one pass to the next (default "
                                 "REFRESHER_INTERVAL_SECONDS, 300).")

    def execute(self, *args, **options):
        if json_output():  # LOG_FORMAT=json
            self.stdout = JsonLines(options.pop("stdout", None) or self.streams[0], level=logging.INFO)
            self.stderr = JsonLines(options.pop("stderr", None) or self.streams[1], level=logging.ERROR)
            if not options.get("force_color"):
                options["no_color"] = True  # no terminal colours inside JSON
        return super().execute(*args, **options)

    def handle(self, *args, window, account, force, dry_run, concurrency, loop, interval, verbosity, processes,
               per_jira, **options):
        report = Report(stdout=self.stdout, stderr=self.stderr, style=self.style, verbosity=verbosity)
        try:
            code = main(Options(window=window, accounts=tuple(account), force=force, dry_run=dry_run,
                                concurrency=concurrency, processes=processes, per_jira=per_jira, loop=loop,
                                interval=interval),
                        report=report, effects=self.effects)
        except BadArguments as exc:
            raise CommandError(str(exc), returncode=BAD_ARGUMENTS) from None
        if code:
            raise SystemExit(code)
