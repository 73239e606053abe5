"""The refresher runs on its own (issue 12): `refresh_tokens --loop`, its heartbeat, `make run`'s Procfile.

- A real `manage.py refresh_tokens --loop --interval 1` process against
  tests/doubles/fake_jira.py: it refreshes a due grant once, leaves a heartbeat row per
  pass (host, pid, counts), and stops cleanly on SIGTERM or Ctrl-C between
  passes (exit 0, at once even with an interval of an hour) and on SIGTERM
  during a slow refresh (that refresh finishes and is stored, exit 143).
- In this process: passes that fail on the database do not end the loop; a
  single (cron) run records its heartbeat too, also when it fails or the
  database cannot take it; old heartbeat rows are pruned with one DELETE;
  --loop refuses --force and --dry-run.
- The Procfile `make run` starts with honcho: its refresher runs passes and
  stops when Ctrl-C reaches honcho.

Real processes share the test's database as in tests/test_refresh_command.py
(PostgreSQL: the test database; SQLite: a file copy of it).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts.models import ALMAccount, RefresherRun
from alm_accounts.refresher import selection
from alm_accounts.refresher.heartbeat import Heartbeat, prune_heartbeat
from alm_accounts.services import DeliveryCounts
from tests.conftest import Run, assert_every_grant_alive
from tests.factories import create_accounts

pytestmark = pytest.mark.django_db(transaction=True)  # rows committed: seen by the refresher's process

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "cmd-client", "CLIENTSECRET-cmd-8a7b"  # as tests/factories.create_accounts
PROCESS_TIMEOUT_SECONDS = 120  # only reached when something is broken
# SIGINT is delivered as the default (KeyboardInterrupt) even if this test run ignores it (a background job).
LAUNCHER = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.argv = ['manage.py', *sys.argv[1:]]; runpy.run_path('manage.py', run_name='__main__')")
PASS_SUMMARY = re.compile(r"^Pass (\d+) \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^)]*\)\. Summary: ")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class Refresher:
    """A `manage.py refresh_tokens ARGS` process whose output is read line by line as it comes."""

    def __init__(self, env: dict, *args: str):
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER, "refresh_tokens", *args], cwd=REPO_ROOT,
                                        env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        # Killed if a test waits for a line that never comes: the test then fails instead of hanging.
        self._watchdog = threading.Timer(PROCESS_TIMEOUT_SECONDS, self.process.kill)
        self._watchdog.start()

    def wait_for_pass(self, number: int) -> str:
        """Read stdout up to the summary of pass `number`; return that line."""
        for line in self.process.stdout:
            self.out.append(line)
            match = PASS_SUMMARY.match(line)
            if match and int(match.group(1)) == number:
                return line
        raise AssertionError(f"the refresher ended before pass {number}: {''.join(self.out)}")

    def stop(self, signum: int) -> Run:
        self.process.send_signal(signum)
        return self.finish()

    def finish(self) -> Run:
        try:
            out, err = self.process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
        finally:
            self._watchdog.cancel()
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        return Run(self.process.returncode, "".join(self.out) + out, err)


def heartbeat() -> list[RefresherRun]:
    return list(RefresherRun.objects.order_by("started_at", "pk"))




# --------------------------------------------------------------------------
# --loop as a real process
# --------------------------------------------------------------------------


def test_the_loop_refreshes_a_due_grant_leaves_a_heartbeat_per_pass_and_stops_on_sigterm(shared_database, fake_jira):
    """Three passes a second apart: the due grant is refreshed by the first, the others find nothing due."""
    keys = create_accounts(fake_jira, 1)

    refresher = Refresher(shared_database, "--loop", "--interval", "1", "-v", "1")
    first = refresher.wait_for_pass(1)
    refresher.wait_for_pass(3)
    run = refresher.stop(signal.SIGTERM)

    assert run.code == 0, run
    assert "Summary: 1 refreshed (1 account connection, 0 user credentials" in first, first
    assert "Jira 00: refreshed — " in run.out
    assert "SIGTERM received: the refresher stops." in run.err, run.err
    runs = heartbeat()
    passes = len(runs)
    assert passes >= 3, runs
    assert run.out.rstrip().endswith(f"The refresher stopped (SIGTERM) after {passes} passes: 1 refreshed."), run.out
    # Jira rotated the grant once, and the account holds the new pair.
    assert dict(fake_jira.refreshes) == {"k00": 1}
    assert_every_grant_alive(fake_jira, keys)
    # One heartbeat row per pass, each finished, naming this host and the refresher's process.
    assert {(r.mode, r.host, r.pid, r.outcome) for r in runs} == {
        ("loop", socket.gethostname(), refresher.process.pid, "ok")}
    assert all(r.started_at <= r.finished_at for r in runs)
    assert [(r.tried, r.refreshed, r.failed, r.needs_reauthorization) for r in runs] == (
        [(1, 1, 0, 0)] + [(0, 0, 0, 0)] * (passes - 1))
    assert runs[0].message.startswith("1 refreshed (1 account connection, 0 user credentials"), runs[0].message


def test_with_log_format_json_every_line_the_loop_writes_is_one_json_object(shared_database, fake_jira):
    """Issue 19a: the start line, each grant's line, each pass's summary and the signal's note are JSON too."""
    create_accounts(fake_jira, 1)
    refresher = Refresher({**shared_database, "LOG_FORMAT": "json"}, "--loop", "--interval", "1", "-v", "1")
    for line in refresher.process.stdout:
        refresher.out.append(line)
        if PASS_SUMMARY.match(json.loads(line)["message"]):
            break
    run = refresher.stop(signal.SIGTERM)

    assert run.code == 0, run
    records = {"stdout": [json.loads(line) for line in run.out.splitlines()],
               "stderr": [json.loads(line) for line in run.err.splitlines()]}  # each line parses, or this fails
    messages = [r["message"] for r in records["stdout"]]
    assert messages[0].startswith("Refreshing the tokens that expire within")
    assert any(m.startswith("Jira 00: refreshed — ") for m in messages)
    assert any(PASS_SUMMARY.match(m) for m in messages)
    assert messages[-1].startswith("The refresher stopped (SIGTERM) after")
    assert {(r["logger"], r["level"]) for r in records["stdout"]} == {("alm_accounts.refresher", "INFO")}
    assert all(r["pid"] == refresher.process.pid and r["time"] for r in records["stdout"] + records["stderr"])
    assert any(r["message"] == "SIGTERM received: the refresher stops." for r in records["stderr"])
    assert any(r["message"].startswith("Token refresh of ALM account") for r in records["stderr"])  # the logs


def test_ctrl_c_while_the_loop_waits_for_its_next_pass_stops_it_at_once(shared_database):
    """An interval of an hour: Ctrl-C (`make run`) or SIGTERM (systemd stop) does not wait for the next pass."""
    refresher = Refresher(shared_database, "--loop", "--interval", "3600", "-v", "1")
    refresher.wait_for_pass(1)
    run = refresher.stop(signal.SIGINT)  # finish() gives up long before the hour is over

    assert run.code == 0, run
    assert "SIGINT received: the refresher stops." in run.err, run.err
    assert "The refresher stopped (SIGINT) after 1 pass: nothing refreshed." in run.out, run.out
    assert [(r.outcome, r.finished_at is not None) for r in heartbeat()] == [("ok", True)]


def test_sigterm_during_a_slow_refresh_lets_it_finish_then_the_loop_exits_143(shared_database, slow_jira):
    """systemd stops the refresher while Jira is slow: the refreshes in flight are stored, then it exits 143."""
    keys = create_accounts(slow_jira, 6)
    in_flight = 1 if connection.vendor == "sqlite" else 4

    refresher = Refresher(shared_database, "--loop", "--interval", "1", "--concurrency", "4", "-v", "1")
    for _ in range(in_flight):
        assert slow_jira.token_requests_started.acquire(timeout=PROCESS_TIMEOUT_SECONDS), "no refresh started"
    run = refresher.stop(signal.SIGTERM)

    assert run.code == 143, run
    assert "SIGTERM received: starting no new refresh" in run.err, run.err
    assert "then the summary follows and the refresher stops." in run.err, run.err
    summary = [line for line in run.out.splitlines() if PASS_SUMMARY.match(line)]
    assert len(summary) == 1 and summary[0].startswith("Pass 1 ("), run.out
    assert summary[0].endswith(f"Stopped early (SIGTERM): {len(keys) - in_flight} account connections left untried.")
    assert f"The refresher stopped (SIGTERM) after 1 pass: {in_flight} refreshed." in run.out, run.out
    assert sum(slow_jira.refreshes.values()) == in_flight, slow_jira.refreshes
    assert_every_grant_alive(slow_jira, keys)
    (stopped,) = heartbeat()
    assert (stopped.mode, stopped.outcome, stopped.tried, stopped.refreshed) == ("loop", "stopped", in_flight,
                                                                                  in_flight)
    assert stopped.finished_at is not None
    assert "Stopped early (SIGTERM)" in stopped.message


# --------------------------------------------------------------------------
# --loop in this process: a failing pass does not end it
# --------------------------------------------------------------------------


def test_passes_that_fail_on_the_database_do_not_end_the_loop(fake_jira, run_command):
    """Pass 1 cannot even start its list, pass 2 loses the database while reading it; pass 3 does the work."""
    keys = create_accounts(fake_jira, 1)
    selections = []

    def select_with_the_database_down(accounts, due_within):
        selections.append(1)
        if len(selections) == 1:
            raise OperationalError("could not connect to server: Connection refused")
        if len(selections) == 2:
            def lost():
                raise OperationalError("server closed the connection unexpectedly")
                yield  # a generator: fails when the first row is read

            return lost()
        return selection.select(accounts, due_within)

    deliveries = []

    def deliver_pending():
        deliveries.append(1)
        if len(deliveries) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # stop the loop after its third pass
        return DeliveryCounts()

    run = run_command("--loop", "--interval", "1", "-v", "1", "--concurrency", "1",
                      select=select_with_the_database_down, deliver_alerts=deliver_pending,
                      pause=lambda interval: 0)  # no pause needed

    assert run.code == 0, run
    assert re.search(r"Pass 1 \([^)]*\)\. The pass stopped: unexpected OperationalError\.", run.err), run.err
    assert re.search(r"Pass 2 \([^)]*\)\. The list of account connections and user credentials could not be read "
                     r"\(OperationalError\): none done, the rest untried\.", run.err), run.err
    assert run.err.count("The next pass starts in about 1 s.") == 2, run.err
    assert re.search(r"Pass 3 \([^)]*\)\. Summary: 1 refreshed \(1 account connection", run.out), run.out
    assert "The refresher stopped (SIGTERM) after 3 passes: 1 refreshed." in run.out, run.out
    assert dict(fake_jira.refreshes) == {"k00": 1}
    assert_every_grant_alive(fake_jira, keys)
    assert len(deliveries) == 3  # alerts due are delivered after every pass, failed or not
    assert [(r.outcome, r.refreshed, r.finished_at is not None) for r in heartbeat()] == [
        ("crashed", 0, True), ("crashed", 0, True), ("ok", 1, True)]
    assert heartbeat()[0].message == "The run stopped: unexpected OperationalError."
    assert "could not be read (OperationalError)" in heartbeat()[1].message


def test_a_loop_with_a_long_interval_refreshes_early_enough_for_its_next_pass(fake_jira, run_command):
    """Every 20 minutes: a token expiring in 45 minutes is refreshed now (a window of three intervals), where a
    single run (15 minutes) leaves it; by the next pass it would have had only 25 minutes left, then 5."""
    keys = create_accounts(fake_jira, 1)
    ALMAccount.objects.update(token_expires_at=timezone.now() + timedelta(minutes=45))
    assert run_command("-v", "1").out.startswith("Summary: nothing to refresh"), "a single run found it due"

    def stop_after_the_first_pass():
        os.kill(os.getpid(), signal.SIGTERM)  # to this process, while the loop handles it
        return DeliveryCounts()

    # The loop is stopped after its first pass.
    run = run_command("--loop", "--interval", "1200", "-v", "1", "--concurrency", "1",
                      deliver_alerts=stop_after_the_first_pass)

    assert run.code == 0, run
    assert run.out.startswith("Refreshing the tokens that expire within 60 minutes, every 1200 s (±10%)."), run.out
    assert dict(fake_jira.refreshes) == {"k00": 1}
    assert_every_grant_alive(fake_jira, keys)


@pytest.mark.parametrize("args, refusal", [
    (["--force"], "--force would rotate every token every few minutes for nothing"),
    (["--dry-run"], "run `refresh_tokens --dry-run` once instead"),
    (["--interval", "600", "--window", "10"], "--window 10 is not longer than the interval (600 s"),
], ids=["force", "dry-run", "window-shorter-than-interval"])
def test_the_loop_refuses_arguments_that_make_no_sense_for_it(run_command, args, refusal):
    run = run_command("--loop", *args)

    assert run.code == 2, run
    assert refusal in run.err, run.err
    assert RefresherRun.objects.count() == 0


def test_an_interval_without_the_loop_is_refused(run_command):
    run = run_command("--interval", "60")

    assert (run.code, run.err.strip()) == (2, "CommandError: --interval goes with --loop."), run


# --------------------------------------------------------------------------
# The heartbeat of a single (cron) run
# --------------------------------------------------------------------------


def test_a_single_run_records_its_heartbeat(fake_jira, run_command):
    create_accounts(fake_jira, 2)
    before = timezone.now()

    run = run_command("-v", "0")

    assert run.code == 0, run
    (row,) = heartbeat()
    assert (row.mode, row.host, row.pid, row.outcome) == ("once", socket.gethostname(), os.getpid(), "ok")
    assert (row.tried, row.refreshed, row.failed, row.needs_reauthorization) == (2, 2, 0, 0)
    assert before <= row.started_at <= row.finished_at <= timezone.now()
    assert row.message.startswith("2 refreshed (2 account connections, 0 user credentials, ")


def test_a_run_with_a_refused_grant_is_recorded_as_failed(fake_jira, run_command):
    """Jira no longer accepts one account's refresh token: the heartbeat says so in its counts."""
    create_accounts(fake_jira, 1)
    ALMAccount.objects.create(
        name="Jira refused", base_url=fake_jira.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        client_secret_base_url=fake_jira.base_url, access_token="AT-unknown", refresh_token="RT-unknown",
        token_expires_at=timezone.now() + timedelta(minutes=5), status=ALMAccount.Status.CONNECTED)

    run = run_command("-v", "0")

    assert run.code == 1, run
    (row,) = heartbeat()
    assert (row.outcome, row.tried, row.refreshed, row.needs_reauthorization) == ("failed", 2, 1, 1)
    assert "1 needs re-authorization, 1 refreshed" in row.message


def test_a_dry_run_records_nothing(fake_jira, run_command):
    create_accounts(fake_jira, 1)

    run = run_command("--dry-run")

    assert run.code == 0 and "Jira 00: would refresh" in run.out, run
    assert RefresherRun.objects.count() == 0


def test_a_heartbeat_the_database_cannot_take_is_reported_and_the_run_goes_on(fake_jira, run_command,
                                                                              monkeypatch):
    keys = create_accounts(fake_jira, 1)

    def down(**fields):
        raise OperationalError("could not write")

    monkeypatch.setattr(RefresherRun.objects, "create", down)

    run = run_command("-v", "0")

    assert run.code == 0, run
    assert ("The start of this run could not be recorded in the refresher's heartbeat (OperationalError): the ALM "
            "Accounts list does not show it.") in run.err, run.err
    assert "The end of this run could not be recorded in the refresher's heartbeat (OperationalError)" in run.err
    assert dict(fake_jira.refreshes) == {"k00": 1}
    assert_every_grant_alive(fake_jira, keys)


def test_heartbeat_rows_older_than_a_week_are_pruned_by_each_run(run_command):
    now = timezone.now()
    for age in (timedelta(days=30), timedelta(days=7, minutes=1), timedelta(days=6, hours=23)):
        RefresherRun.objects.create(host=f"{age.days}-days", pid=1, started_at=now - age, finished_at=now - age)

    run = run_command("-v", "0")

    assert run.code == 0, run
    assert [r.host for r in heartbeat()] == ["6-days", socket.gethostname()]


def test_the_heartbeat_keeps_at_most_its_newest_rows_with_one_delete(run_command):
    """Several loops at a short interval: never more than HEARTBEAT_KEEP_AT_MOST rows (here 4), the newest."""
    now = timezone.now()
    for minutes in (50, 40, 30, 20, 10):
        RefresherRun.objects.create(host=f"{minutes}-minutes", pid=2, started_at=now - timedelta(minutes=minutes),
                                    finished_at=now - timedelta(minutes=minutes))

    run = run_command("-v", "0", heartbeat=lambda mode, report: Heartbeat(mode, report, keep_at_most=4))

    assert run.code == 0, run
    assert [r.host for r in heartbeat()] == ["30-minutes", "20-minutes", "10-minutes", socket.gethostname()]
    with CaptureQueriesContext(connection) as queries:
        prune_heartbeat(keep_at_most=4)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["DELETE"], queries.captured_queries


# --------------------------------------------------------------------------
# make run: Procfile.dev under honcho
# --------------------------------------------------------------------------


def test_make_run_s_procfile_declares_both_processes_and_its_refresher_stops_on_ctrl_c(shared_database):
    """`make run` = `honcho start` on the Procfile: its refresher runs passes; Ctrl-C to honcho stops it.

    Only the refresher process is started here (the web process would need port 8000); the Procfile must
    still declare both.
    """
    from honcho.environ import parse_procfile

    procfile = parse_procfile((REPO_ROOT / "Procfile.dev").read_text()).processes
    assert set(procfile) == {"web", "refresher"}
    assert "manage.py runserver" in procfile["web"]
    assert "manage.py refresh_tokens --loop" in procfile["refresher"]
    # The production profile declares the same two processes, the web one served by gunicorn.
    production = parse_procfile((REPO_ROOT / "Procfile").read_text()).processes
    assert set(production) == {"web", "refresher"}
    assert "gunicorn -c deploy/gunicorn.conf.py" in production["web"]
    assert production["refresher"] == procfile["refresher"]

    # `make run` puts the virtualenv's bin first on PATH: the Procfile's `python` is this one.
    env = {**shared_database, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONUNBUFFERED": "1"}
    honcho = subprocess.Popen([sys.executable, "-c", "import signal, sys; from honcho.command import main; "
                               "signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(main())",
                               "start", "-e", "/dev/null", "-f", str(REPO_ROOT / "Procfile.dev"), "refresher"],
                              cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(PROCESS_TIMEOUT_SECONDS, honcho.kill)
    watchdog.start()
    seen = []
    try:
        for line in honcho.stdout:
            seen.append(line)
            if re.search(r"refresher\.1 +\| Pass 1 \(.*\)\. Summary: nothing to refresh", line):
                break
        honcho.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = honcho.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    finally:
        watchdog.cancel()
        if honcho.poll() is None:
            honcho.kill()
            honcho.communicate()
    out = "".join(seen) + out

    assert re.search(r"refresher\.1 +\| Pass 1 \(", out), out
    assert re.search(r"refresher\.1 +\| The refresher stopped \(SIGTERM\) after 1 pass: nothing refreshed\.", out), out
    assert re.search(r"system +\| refresher\.1 stopped", out), out
    assert [r.mode for r in heartbeat()] == ["loop"]


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------


def test_the_systemd_unit_runs_the_loop_and_gives_a_refresh_in_flight_time_to_finish(settings):
    """`systemctl stop` during a refresh must not SIGKILL it before JIRA_REFRESH_DEADLINE: the grant would be lost."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(REPO_ROOT / "deploy" / "systemd" / "kendis-refresher.service")
    service = unit["Service"]

    assert service["ExecStart"].endswith("manage.py refresh_tokens --loop -v 1")
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > settings.JIRA_REFRESH_DEADLINE
    # Stopped during a pass (exit 143) is a clean stop, not a failure to restart from.
    assert {"143", "130"} <= set(service["SuccessExitStatus"].split())
    assert service["Restart"] == "on-failure"
