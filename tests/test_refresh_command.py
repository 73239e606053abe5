"""refresh_tokens stopped or broken mid-run (issue 10): no grant lost, no account silently left untried.

- SIGTERM / SIGINT sent to a real `manage.py refresh_tokens` process while its
  refreshes wait on a slow Jira (tests/doubles/fake_jira.py): the refreshes in flight
  finish and store Jira's new tokens, nothing new is started, the summary says
  it stopped, the exit code is 128 + the signal number.
- The list of accounts breaking while it is streamed, or a refresh stopped by
  an unexpected BaseException: the run fails (exit 1, a message) instead of
  ending with exit 0 and accounts never tried.

Runs on SQLite (concurrency forced to 1: the one refresh in flight must
finish) and on PostgreSQL (4 in flight). The process shares the test's
database: on PostgreSQL pytest-django's test database, on SQLite a file copy of
it (the test database lives in memory, out of another process's reach).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style
from django.db import OperationalError, connection

from alm_accounts import services
from alm_accounts.models import ALMAccount
from alm_accounts.refresher import selection
from alm_accounts.refresher.heartbeat import Heartbeat
from alm_accounts.refresher.main import Options, main
from alm_accounts.refresher.report import Report
from alm_accounts.refresher.run import Effects
from tests.conftest import Run, assert_every_grant_alive
from tests.doubles.fake_jira import FakeJira
from tests.factories import create_accounts

pytestmark = pytest.mark.django_db(transaction=True)  # rows committed: seen by worker threads and processes

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "cmd-client", "CLIENTSECRET-cmd-8a7b"
PROCESS_TIMEOUT_SECONDS = 120  # only reached when something is broken
Status = ALMAccount.Status


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------




# --------------------------------------------------------------------------
# SIGTERM / SIGINT
# --------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_refreshes_in_flight_finish_and_stops_taking_accounts(shared_database, slow_jira, signum):
    """systemd stop, a CronJob deadline or Ctrl-C while refreshes wait on Jira: no grant is lost.

    Jira rotates the grant as soon as it answers; a process killed before it
    stores the answer leaves the account with a refresh token Jira no longer
    accepts. Sent twice: the second signal must not abort the refreshes either.
    """
    keys = create_accounts(slow_jira, 10)
    in_flight = 1 if connection.vendor == "sqlite" else 4
    # SIGINT is delivered as the default (KeyboardInterrupt) even if this test run ignores it (a background job).
    launcher = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv = ['manage.py', *sys.argv[1:]]; runpy.run_path('manage.py', run_name='__main__')")
    process = subprocess.Popen([sys.executable, "-c", launcher, "refresh_tokens", "--concurrency", "4"],
                               cwd=REPO_ROOT, env=shared_database, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        for _ in range(in_flight):
            assert slow_jira.token_requests_started.acquire(timeout=PROCESS_TIMEOUT_SECONDS), "no refresh started"
        process.send_signal(signum)
        process.send_signal(signum)
        out, err = process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    run = Run(process.returncode, out, err)
    name = signal.Signals(signum).name

    assert run.code == 128 + signum, run
    assert f"{name} received: starting no new refresh" in run.err, run.err
    # Every refresh that had reached Jira was finished and stored; none was started after the signal.
    assert sum(slow_jira.refreshes.values()) == in_flight, slow_jira.refreshes
    assert run.out.count(": refreshed — ") == in_flight, run.out
    assert run.summary.startswith(f"Summary: {in_flight} refreshed ({in_flight} account connection"), run.summary
    assert run.summary.endswith(
        f"Stopped early ({name}): {len(keys) - in_flight} account connections left untried."), run.summary
    assert_every_grant_alive(slow_jira, keys)


def test_ctrl_c_during_a_refresh_in_this_process_is_handled_and_the_handlers_are_restored(
    fake_jira, run_command, monkeypatch
):
    """The same inside one process, signals delivered while the refresh runs (--concurrency 1: the main thread).

    The command's handlers are in place only during the run: the caller's own
    handler neither sees the signals nor is lost afterwards.
    """
    keys = create_accounts(fake_jira, 3)
    real_refresh = services.refresh_grant

    def refresh_interrupted(**kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this refresh is under way...
        os.kill(os.getpid(), signal.SIGINT)  # ...and again
        return real_refresh(**kwargs)

    monkeypatch.setattr(services, "refresh_grant", refresh_interrupted)
    seen_by_caller = []

    def callers_handler(signum, frame):
        seen_by_caller.append(signum)

    previous = signal.signal(signal.SIGINT, callers_handler)
    try:
        run = run_command("--concurrency", "1")
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)

    assert run.code == 130, run
    assert seen_by_caller == []
    assert after is callers_handler
    assert "SIGINT received: starting no new refresh" in run.err
    assert "SIGINT received again: still waiting for the refreshes in flight" in run.err
    assert run.out.startswith("Jira 00: refreshed — "), run.out
    assert run.summary.endswith("Stopped early (SIGINT): 2 account connections left untried."), run.summary
    assert dict(fake_jira.refreshes) == {"k00": 1}
    assert_every_grant_alive(fake_jira, keys)


# --------------------------------------------------------------------------
# A broken feeder or worker fails the run
# --------------------------------------------------------------------------


def test_a_list_of_accounts_that_breaks_mid_way_fails_the_run(fake_jira, run_command):
    """The database connection is lost while the ids are streamed: exit 1 and say so, never exit 0."""
    keys = create_accounts(fake_jira, 6)

    def select_then_lose_the_connection(accounts, due_within):
        rows = selection.select(accounts, due_within)

        def stream():
            yield from islice(rows, 3)
            raise OperationalError("server closed the connection unexpectedly")

        return stream()

    # --force: the ids go straight to the refreshes (a due-only run reads them by blocks first, see spread).
    run = run_command("--concurrency", "4", "--force", select=select_then_lose_the_connection)

    assert run.code == 1, run
    assert ("The list of account connections and user credentials could not be read (OperationalError): "
            "3 account connections done, the rest untried.") in run.err, run.err
    assert run.summary.startswith("Summary: 3 refreshed (3 account connections, 0 user credentials, "), run.summary
    assert "the rest left untried" in run.summary
    first_three = list(keys.values())[:3]
    assert dict(fake_jira.refreshes) == dict.fromkeys(first_three, 1)
    assert_every_grant_alive(fake_jira, keys)


@pytest.fixture
def steady_jira():
    """Jira taking half a second per token request: refreshes running when the run fails are still running."""
    with FakeJira(latency=0.5) as fake:
        yield fake


def test_a_refresh_stopped_by_an_unexpected_base_exception_fails_the_run(steady_jira, run_command, monkeypatch):
    """Something inside a refresh calls sys.exit(0) (a BaseException, not caught as an account's error).

    It must not end the run with exit 0 while the remaining accounts were never tried,
    nor kill a worker thread silently: the run fails, naming the account, and takes no new account.
    """
    keys = create_accounts(steady_jira, 8)
    victim = list(keys)[1]
    real_refresh = services.refresh_grant

    def refresh_or_exit(*, grant, **kwargs):
        if grant.pk == victim:
            sys.exit(0)
        return real_refresh(grant=grant, **kwargs)

    monkeypatch.setattr(services, "refresh_grant", refresh_or_exit)

    run = run_command("--concurrency", "4")

    assert run.code == 1, run
    assert "Jira 01: failed — the refresh stopped unexpectedly (SystemExit); the run stops" in run.out
    assert "A refresh stopped unexpectedly (SystemExit) on Jira 01: " in run.err, run.err
    assert run.err.rstrip().endswith("account connections done, the rest untried.")
    assert "1 failed" in run.summary and "the rest left untried" in run.summary
    # Refreshes under way were let finish; the accounts still waiting were not taken (SQLite: one at a time,
    # so only Jira 00 before it; PostgreSQL: the three running beside it and at most one its thread took next).
    refreshed = sum(steady_jira.refreshes.values())
    assert 1 <= refreshed <= 4 and keys[victim] not in steady_jira.refreshes, steady_jira.refreshes
    assert run.out.count(": refreshed — ") == refreshed
    assert_every_grant_alive(steady_jira, keys)


# --------------------------------------------------------------------------
# --processes: refused where it cannot help
# --------------------------------------------------------------------------


@pytest.mark.parametrize("args, refusal", [
    (["--processes", "1000"], "--processes must be at most the number of CPU cores"),
    (["--processes", "0"], "--processes"),
])
def test_processes_beyond_the_cores_or_none_are_refused(run_command, db, args, refusal):
    run = run_command(*args)
    assert run.code == 2, run
    assert refusal in run.err, run.err


def test_processes_beyond_the_concurrency_are_refused_and_sqlite_runs_in_one_process(run_command, db, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    run = run_command("--processes", "4", "--concurrency", "2")
    if connection.vendor == "sqlite":
        # One writer at a time: a second process would only wait for the first.
        assert run.code == 0 and "SQLite serialises refreshes: running in one process." in run.err, run
    else:
        assert run.code == 2 and "--processes must be at most the concurrency (2)" in run.err, run


# --------------------------------------------------------------------------
# The engine without the command
# --------------------------------------------------------------------------


def test_the_refresher_runs_without_the_command_writing_to_the_report_it_is_given(fake_jira):
    """refresher.main.main is what the command calls: its lines go to the Report given, its heartbeat to the
    Effects given, and it returns the exit code."""
    keys = create_accounts(fake_jira, 2)
    out, err = io.StringIO(), io.StringIO()
    report = Report(stdout=OutputWrapper(out), stderr=OutputWrapper(err), style=no_style(), verbosity=1)
    heartbeats = []

    def heartbeat(mode, report):
        heartbeats.append(mode)
        return Heartbeat(mode, report)

    code = main(Options(concurrency=1), report=report, effects=Effects(heartbeat=heartbeat))

    assert code == 0, (out.getvalue(), err.getvalue())
    assert out.getvalue().startswith("Jira 00: refreshed — ")
    assert "\nSummary: 2 refreshed (2 account connections, 0 user credentials, " in out.getvalue()
    assert heartbeats == ["once"]
    assert_every_grant_alive(fake_jira, keys)
