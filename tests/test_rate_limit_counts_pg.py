"""The rate-limit counters of /metrics are the deployment's, on PostgreSQL (issue 21, part 3): what one process
counted (the refresher and its worker processes, a `manage.py jira_call`) is in the numbers another process
serves (the test client here plays the web worker), and two processes adding to one count at the same moment
both count.

Real processes (`manage.py ...` on this test database) against the fake Jira on a real socket
(tests/doubles/fake_jira.py). PostgreSQL only: locally they skip without it; with CI=true they fail. Run them with:

    DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis .venv/bin/python -m pytest \
        tests/test_rate_limit_counts_pg.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection, transaction

from alm_accounts import rate_limits
from alm_accounts.models import RateLimitCount
from alm_accounts.services.rate_limits import CountsWriter
from tests.conftest import in_thread, metric_samples
from tests.doubles.fake_jira import MYSELF_PATH, TOKEN_PATH, Answer
from tests.factories import AccountFactory, create_accounts

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT_SECONDS = 120
SAFETY_NET_SECONDS = 30  # no test waits this long unless something is broken
LIMITED_TOTAL = "kendis_jira_rate_limited_responses_total"
NEAR_TOTAL = "kendis_jira_near_limit_responses_total"


def command_env() -> dict[str, str]:
    """The environment of a `manage.py` process using this test database (pytest-django's test_<name>)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test", "DATABASE_URL": url}


def manage(*args: str) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in a process of its own (its memory is not this one's)."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=command_env(),
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT_SECONDS)



def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_until(condition, what: str):
    deadline = time.monotonic() + SAFETY_NET_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.01)


def test_the_429s_of_the_refreshers_worker_processes_are_in_the_metrics_a_web_process_serves(fake_jira, client,
                                                                                             settings):
    """refresh_tokens --processes 2: each worker process meets Atlassian's (here Jira's) 429 on its first token
    request and leaves the endpoint alone after it; every 429 Jira sent is counted once in /metrics, served by a
    process that made none of those calls."""
    create_accounts(fake_jira, 6)
    fake_jira.outage = Answer(429, b"{}", {"Content-Type": "application/json", "Retry-After": "30",
                                           "RateLimit-Reason": "jira-quota-global-based"})

    run = manage("refresh_tokens", "--concurrency", "2", "--processes", "2")

    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    sent_429 = sum(1 for call in fake_jira.calls if call.path == TOKEN_PATH)
    assert sent_429 >= 2  # one at least per worker process: their counts were each written
    assert rate_limits.COUNTS.snapshot() == {}  # nothing of it in this process's memory
    found = metric_samples(client, settings)
    assert found[(LIMITED_TOTAL, (("provider", "datacenter"), ("reason", "jira-quota-global-based")))] == sent_429


def test_a_near_limit_answer_to_a_jira_call_of_another_process_is_in_the_metrics(fake_jira, client, settings):
    """`manage.py jira_call` (any process that calls Jira: a web worker too) ends within a second of its call,
    before its writing thread's interval: what it counted is written at its exit."""
    AccountFactory(name="Core Banking", jira=fake_jira, jira_user="jadmin")
    fake_jira.json(MYSELF_PATH, {"name": "jadmin", "displayName": "Jira Admin"},
                   headers={"X-RateLimit-NearLimit": "true"})

    run = manage("jira_call", "Core Banking", "GET", "/rest/api/2/myself")

    assert run.returncode == 0, run.stderr
    found = metric_samples(client, settings)
    assert found[(NEAR_TOTAL, (("provider", "datacenter"),))] == 1
    assert found[(NEAR_TOTAL, (("provider", "cloud"),))] == 0


def test_two_processes_adding_to_one_count_at_the_same_moment_both_count():
    """Two writers (two processes' CountsWriter) add to the same count while the first one's transaction is still
    open: the second waits for it (PostgreSQL's row lock, or the unique index when the row is new), then adds its
    own. Both when the row does not exist yet (INSERT against INSERT) and when it does (UPDATE against UPDATE)."""
    limited = rate_limits.RateLimit(status=429, retry_after=30.0, reason="jira-burst-based", near_limit=False)

    def writer(count: int) -> CountsWriter:
        counts = rate_limits.Counts()
        for _ in range(count):
            counts.add("cloud", limited)
        return CountsWriter(counts)

    def held_open(first: CountsWriter, written: threading.Event, release: threading.Event) -> bool:
        with transaction.atomic():  # the first writer's transaction stays open until the test releases it
            ok = first.write()
            written.set()
            release.wait(SAFETY_NET_SECONDS)
        return ok

    expected = 0
    for round_ in ("new row", "existing row"):
        written, release = threading.Event(), threading.Event()
        first_thread, first = in_thread(held_open, writer(3), written, release)
        assert written.wait(SAFETY_NET_SECONDS), first
        second_thread, second = in_thread(writer(2).write)
        wait_until(lambda: backends_waiting_for_a_lock() >= 1, f"{round_}: the second writer waiting for the first")
        release.set()
        for thread in (first_thread, second_thread):
            thread.join(SAFETY_NET_SECONDS)
        assert first == {"result": True} and second == {"result": True}, (round_, first, second)
        expected += 5
        row = RateLimitCount.objects.get(provider="cloud", signal="rate_limited", reason="jira-burst-based")
        assert row.count == expected, round_
