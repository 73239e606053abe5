"""What the refresher says: each grant's line, each run's summary and log record, JSON lines, exit codes.

LOG_FORMAT=json: every line the command writes, on stdout and on stderr, is
one JSON object (time, level, logger, pid, message), like its log records:
the start line, each grant's line, each pass's summary and the notes about
signals. Plain text otherwise.

Exit codes of a single run:
    0    every grant tried, every refresh succeeded (or nothing was due)
    1    a refresh failed or a grant needs re-authorization (not: a grant
         whose account's link was removed in Jira, counted apart as "client
         refused", see services.client_refused); or the run
         itself failed (the list of grants could not be read, a refresh
         stopped unexpectedly) and the remaining grants were not tried
    2    bad arguments (BadArguments)
    130  stopped by SIGINT before every grant was tried
    143  stopped by SIGTERM before every grant was tried
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections import Counter

from alm_accounts.services import RefreshOutcome
from kendis_integration.logs import JsonFormatter

from ..conf import app_settings

log = logging.getLogger("alm_accounts.refresher")
# The two kinds of grant (services.GrantRef), in the order they are listed and counted, and their names.
GRANT_KINDS = ("account", "user")
KIND_NAMES = {"account": ("account connection", "account connections"),
              "user": ("user credential", "user credentials")}
BAD_ARGUMENTS = 2  # the exit code of BadArguments


class BadArguments(Exception):
    """Arguments the refresher refuses (exit code 2); the message says why, in the command's words."""


class JsonLines:
    """The command's output as JSON lines (LOG_FORMAT=json): each write is one object, as a log record would be
    (logger alm_accounts.refresher, INFO on stdout, ERROR on stderr), so that a log shipper reads every line.
    Written like the command's OutputWrapper (write(msg, style_func, ending)); no style, no colour."""

    style_func = None  # BaseCommand.execute sets it; a JSON line has no colour

    def __init__(self, out, *, level: int):
        self.out = out
        self.level = level

    def write(self, msg="", style_func=None, ending=None):
        text = msg.rstrip("\n")
        if text.strip():
            self.out.write(json_line(text, level=self.level) + "\n")
            self.out.flush()

    def flush(self):
        self.out.flush()


def json_line(text: str, *, level: int) -> str:
    return JsonFormatter().format(logging.LogRecord(log.name, level, __file__, 0, text, None, None))


def json_output() -> bool:
    return app_settings.LOG_FORMAT == "json"


def kinds(counts: Counter[str], *, every_kind: bool = False) -> str:
    """Counts by kind: all ("2 account connections, 0 user credentials") or those counted ("1 user credential")."""
    parts = [f"{counts[kind]} {KIND_NAMES[kind][counts[kind] != 1]}" for kind in GRANT_KINDS
             if every_kind or counts[kind]]
    return ", ".join(parts) if every_kind else " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class RunEnd:
    """How one run (or one pass of --loop) ended."""

    code: int  # the exit code a single run ends with
    stopped: bool  # a signal stopped it before every grant was tried
    counts: Counter  # results by outcome


@dataclasses.dataclass(frozen=True)
class Summary:
    """What one run (or pass) did, as its summary line, heartbeat row and log record say it."""

    text: str  # "2 refreshed (2 account connections, 0 user credentials, 0.1 s, concurrency 1)." and why it stopped
    failure: str  # why the run itself failed ("" if it did not), said on stderr
    outcome: str  # the heartbeat's: ok / failed / stopped / crashed
    failed: int  # refreshes that failed or need re-authorization
    stopped: bool
    code: int


def summarize(*, counts: Counter[str], kinds_done: Counter[str], elapsed: float, concurrency: int, processes: int,
              dry_run: bool, signum: int | None, failure: str | None, untried: Counter[str] | None,
              paced: str = "", kept_alive: int = 0) -> Summary:
    """`kept_alive`: how many of the refreshes only kept an idle grant alive (services.RefreshResult.kept_alive)."""
    failed = sum(n for outcome, n in counts.items() if outcome in (RefreshOutcome.FAILED.value,
                                                                    RefreshOutcome.NEEDS_REAUTHORIZATION.value))
    stopped = signum is not None and (untried is None or sum(untried.values()) != 0)
    text = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "nothing to refresh"
    spread = f" in {processes} processes" if processes > 1 and not dry_run else ""
    text = f"{text} ({kinds(kinds_done, every_kind=True)}, {elapsed:.1f} s, concurrency {concurrency}{spread}).{paced}"
    refreshed = counts[RefreshOutcome.REFRESHED.value]
    if kept_alive:  # else every refresh was for a grant in use, as before issue 21: nothing to add
        kept = kept_alive
        fresh = f"{refreshed - kept} for {'a grant' if refreshed - kept == 1 else 'grants'} in use"
        alive = f"{kept} keep-alive{'' if kept == 1 else 's'} of {'an idle grant' if kept == 1 else 'idle grants'}"
        text += f" Of the refreshes: {fresh}, {alive}."
    if stopped:
        left = "the rest" if untried is None else kinds(untried)
        text += f" Stopped early ({signal.Signals(signum).name}): {left} left untried."
    elif failure:
        text += " The run failed: the rest left untried."
    elif signum is not None:
        text += f" {signal.Signals(signum).name} came after the last grant was taken: none left untried."
    failure_line = (f"{failure[0].upper()}{failure[1:]}: {kinds(kinds_done) or 'none'} done, the rest untried."
                    if failure else "")
    outcome = "crashed" if failure else "stopped" if stopped else "failed" if failed else "ok"
    if failure:
        code = 1
    elif stopped:
        code = 128 + signum
    else:
        code = 1 if failed else 0
    return Summary(text=text, failure=failure_line, outcome=outcome, failed=failed, stopped=stopped, code=code)


class Report:
    """Where the refresher writes: the command's stdout and stderr (OutputWrapper or JsonLines), its style and
    verbosity. Tests give their own streams; nothing else of the command reaches the engine."""

    def __init__(self, *, stdout, stderr, style, verbosity: int = 1):
        self.stdout, self.stderr, self.style, self.verbosity = stdout, stderr, style, verbosity

    @property
    def verbose(self) -> bool:
        return self.verbosity >= 1

    def out(self, text: str, *, error: bool = False, success: bool = False):
        self.stdout.write(self.style.ERROR(text) if error else self.style.SUCCESS(text) if success else text)

    def err(self, text: str, *, error: bool = False):
        self.stderr.write(self.style.ERROR(text) if error else text)

    def grant(self, text: str, *, failed: bool):
        """One grant's line: always when it failed, else at verbosity 1 and more."""
        if failed:
            self.out(text, error=True)
        elif self.verbose:
            self.out(text)

    def end_of_run(self, summary: Summary, *, label: str, refreshed: int, tried: int):
        """The log record of a run or pass, its summary line and why it failed."""
        # One log line per run or pass (LOG_FORMAT=json makes it a record for log shippers); never a secret.
        extra = {"outcome": summary.outcome, "refreshed": refreshed, "failed": summary.failed, "tried": tried}
        log.log(logging.INFO if summary.outcome == "ok" else logging.WARNING, "Refresher %s: %s %s",
                label.strip().rstrip(".") or "run", summary.text, summary.failure, extra=extra)
        trouble = bool(summary.failed or summary.stopped or summary.failure)
        if self.verbose or trouble:
            self.out(f"{label}Summary: {summary.text}", error=trouble, success=not trouble)
        if summary.failure:
            self.err(f"{label}{summary.failure}", error=True)

    @staticmethod
    def note_now(note: str):
        """A note written from a signal handler: os.write, not the stderr wrapper, which the handler may have
        interrupted in the middle of a write (Python refuses the reentrant call). Raises OSError."""
        if json_output():
            note = json_line(note.rstrip("\n"), level=logging.WARNING) + "\n"
        os.write(2, note.encode())
