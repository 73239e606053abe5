"""Never two refreshes of one refresh token: several runners at once, on PostgreSQL (issue 4), over accounts'
own connections and people's user credentials alike (issue 11).

Real processes (`manage.py refresh_tokens`) and real threads against the shared
fake Jira (tests/doubles/fake_jira.py): every refresh rotates both tokens, an old
refresh token gets invalid_grant, and every request is counted. The tests also
prove that the runners really overlapped: a race that never happened proves
nothing.

PostgreSQL only (row locks, SKIP LOCKED). Without it these tests skip locally;
with CI=true they fail, so CI cannot pass without running them. Run them with:

    DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis .venv/bin/python -m pytest \
        tests/test_refresh_concurrency_pg.py
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from alm_accounts.services import RefreshOutcome
from tests.conftest import in_thread
from tests.doubles.fake_jira import CLOUD_TOKEN_PATH, TOKEN_PATH, FakeJira

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID, CLIENT_SECRET = "pg-client", "CLIENTSECRET-pg-5e6f"
# Jira Cloud accounts use the deployment's Atlassian app (ATLASSIAN_CLIENT_ID / _SECRET in the runners' environment).
CLOUD_CLIENT_ID, CLOUD_CLIENT_SECRET = "pg-cloud-app", "CLOUDSECRET-pg-7a8b"
LATENCY_SECONDS = 0.05  # Jira takes a moment: a lone runner needs seconds for all accounts, so others join in
RUNNER_CONCURRENCY = 4  # the most token requests one runner can have in flight
PROCESS_TIMEOUT_SECONDS = 300
SAFETY_NET_SECONDS = 30  # no test waits this long unless something is broken
Status = ALMAccount.Status


@pytest.fixture
def jira():
    """The shared fake Jira (tests/doubles/fake_jira.py), a little slow, as Jira is under load."""
    with FakeJira(latency=LATENCY_SECONDS) as fake:
        yield fake


def create_accounts(jira: FakeJira, count: int, *, expires_in: timedelta) -> dict[int, str]:
    """`count` connected accounts whose access tokens expire in `expires_in`; {account id: grant key}."""
    now = timezone.now()
    accounts = [
        ALMAccount(name=f"Jira {i:04}", base_url=jira.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   token_expires_at=now + expires_in, token_scope="ADMIN", status=Status.CONNECTED,
                   connected_at=now - timedelta(days=1))
        for i in range(count)
    ]
    for i, account in enumerate(accounts):
        account.access_token, account.refresh_token = jira.add_grant(
            f"a{i:04}", redirect_uri=account.callback_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    ALMAccount.objects.bulk_create(accounts)
    return {pk: f"a{int(name.split()[1]):04}" for pk, name in ALMAccount.objects.values_list("pk", "name")}


def create_cloud_accounts(jira: FakeJira, count: int, *, expires_in: timedelta) -> dict[int, str]:
    """`count` connected Jira Cloud accounts (each its own site, the deployment's app); {account id: grant key}."""
    now = timezone.now()
    accounts = [
        ALMAccount(name=f"Cloud {i:04}", authentication=ALMAccount.Authentication.JIRA_CLOUD_OAUTH2,
                   base_url=f"https://site-{i:04}.atlassian.net", cloud_id=f"00000000-0000-4000-8000-{i:012}",
                   cloud_site_name=f"site-{i:04}", token_expires_at=now + expires_in,
                   token_scope="read:jira-work offline_access", status=Status.CONNECTED,
                   connected_at=now - timedelta(days=1))
        for i in range(count)
    ]
    for i, account in enumerate(accounts):
        account.access_token, account.refresh_token = jira.add_grant(
            f"c{i:04}", redirect_uri="", client_id=CLOUD_CLIENT_ID, client_secret=CLOUD_CLIENT_SECRET, cloud=True)
    ALMAccount.objects.bulk_create(accounts)
    return {pk: f"c{int(name.split()[1]):04}" for pk, name in
            ALMAccount.objects.filter(name__startswith="Cloud ").values_list("pk", "name")}


def cloud_env(jira: FakeJira) -> dict[str, str]:
    """The runners' deployment settings for Jira Cloud: the fake's Cloud token endpoint, the deployment's app."""
    return {"ATLASSIAN_AUTH_URL": jira.auth_url, "ATLASSIAN_API_URL": jira.auth_url.replace("127.0.0.1", "localhost"),
            "ATLASSIAN_CLIENT_ID": CLOUD_CLIENT_ID, "ATLASSIAN_CLIENT_SECRET": CLOUD_CLIENT_SECRET}


def create_people(jira: FakeJira, keys: dict[int, str], per_account: int, *,
                  expires_in: timedelta) -> dict[int, str]:
    """`per_account` people with their own connected credential on each account; {credential id: grant key}."""
    users = User.objects.bulk_create([User(username=f"person-{p:02}", is_staff=True, password="!")
                                      for p in range(per_account)])
    now = timezone.now()
    accounts = ALMAccount.objects.in_bulk(list(keys))
    credentials, key_of = [], {}
    for pk, account_key in keys.items():
        for user in users:
            credential = ALMCredential(account_id=pk, user=user, token_expires_at=now + expires_in,
                                       token_scope="ADMIN", status=Status.CONNECTED,
                                       connected_at=now - timedelta(days=1), connected_as_name=user.username)
            key = f"{account_key}/{user.username}"
            cloud = accounts[pk].is_cloud
            credential.access_token, credential.refresh_token = jira.add_grant(
                key, redirect_uri="" if cloud else accounts[pk].callback_url, cloud=cloud,
                client_id=CLOUD_CLIENT_ID if cloud else CLIENT_ID,
                client_secret=CLOUD_CLIENT_SECRET if cloud else CLIENT_SECRET, user=user.username)
            credentials.append(credential)
            key_of[(pk, user.username)] = key
    ALMCredential.objects.bulk_create(credentials)
    return {pk: key_of[(account_id, username)] for pk, account_id, username in
            ALMCredential.objects.values_list("pk", "account_id", "user__username")}


def command_env() -> dict[str, str]:
    """The environment of a `manage.py` process using this test database (pytest-django's test_<name>)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test", "DATABASE_URL": url}


def start_runners(count: int, *args: str, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    argv = [sys.executable, "manage.py", "refresh_tokens", *args]
    env = {**command_env(), **(env or {})}
    return [subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(count)]


def finish(processes: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results.append((process.returncode, out, err))
    return results


def assert_each_refreshed_once_and_stored(jira: FakeJira, keys: dict[int, str]):
    assert jira.rejected == [] and jira.unexpected == [], (jira.rejected + jira.unexpected)[:10]
    assert sorted(jira.refreshes.values()) == [1] * len(keys), [
        (k, n) for k, n in jira.refreshes.items() if n != 1][:10]
    assert set(jira.refreshes) == set(keys.values())
    # Every account holds Jira's current pair: nothing older was written over a newer one.
    stored = {pk: (a, r, s) for pk, a, r, s in ALMAccount.objects.values_list(
        "pk", "access_token", "refresh_token", "status")}
    wrong = [(pk, s) for pk, (a, r, s) in stored.items()
             if (a, r) != jira.current_tokens(keys[pk]) or s != Status.CONNECTED]
    assert wrong == [], wrong[:10]
    assert not ALMAccount.objects.filter(status=Status.NEEDS_REAUTHORIZATION).exists()
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESH_FAILED).exists()
    # Each account counted its one refresh (routine refreshes are counted on the grant, not audited).
    assert sorted(ALMAccount.objects.values_list("refresh_count", flat=True)) == [1] * len(keys)


def wait_until(condition, what: str, timeout: float = SAFETY_NET_SECONDS):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.01)


def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------


def refreshed_names(out: str) -> list[str]:
    """The accounts a runner reports as refreshed ("<name>: refreshed — ...")."""
    return [line.split(":")[0] for line in out.splitlines() if ": refreshed — " in line]


def test_parallel_runners_refresh_every_due_account_exactly_once(jira):
    """4 cron runners start at once (no --force), 4 threads each, 200 due accounts.

    Each takes an account's row lock or skips it when locked (SKIP LOCKED); one that gets the lock
    after another runner refreshed the account sees it is no longer due and leaves it.

    Jira holds the first token requests until more are in flight than one runner can send: the
    runners must really overlap (a lock that serialised them would leave nothing to prove).
    """
    keys = create_accounts(jira, 200, expires_in=timedelta(minutes=5))
    jira.hold_token_requests(until_in_flight=RUNNER_CONCURRENCY + 1)

    results = finish(start_runners(4, "--concurrency", str(RUNNER_CONCURRENCY)))

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
        assert "Summary:" in out
        assert "failed" not in out and "needs re-authorization" not in out, out[-3000:]
    # They overlapped: Jira answered more token requests at once than one runner can have in flight,
    # and more than one runner refreshed accounts.
    assert jira.max_token_in_flight > RUNNER_CONCURRENCY, jira.max_token_in_flight
    refreshed_per_runner = [len(refreshed_names(out)) for _, out, _ in results]
    assert sum(1 for count in refreshed_per_runner if count) >= 2, refreshed_per_runner
    assert_each_refreshed_once_and_stored(jira, keys)
    # Between them the runners report every account refreshed once.
    assert sorted(name for _, out, _ in results for name in refreshed_names(out)) == sorted(
        ALMAccount.objects.values_list("name", flat=True))


def test_on_demand_tokens_racing_the_runners_never_resend_a_refresh_token(jira):
    """Code asking for a token (valid_access_token) while two cron runners refresh the same accounts.

    Every account is due for both (30 s left). Whoever refreshes first, each account is refreshed once,
    and every on-demand caller gets Jira's current access token. The callers start once the runners'
    first refresh is at Jira, and both sides are shown to have refreshed accounts: they raced.
    """
    keys = create_accounts(jira, 100, expires_in=timedelta(seconds=30))
    ids = list(keys)

    def ask_for_every_token(seed: int) -> dict[int, str]:
        order = ids[:]
        random.Random(seed).shuffle(order)
        return {pk: services.valid_access_token(account=ALMAccount.objects.get(pk=pk), actor=f"caller-{seed}")
                for pk in order}

    runners = start_runners(2, "--concurrency", str(RUNNER_CONCURRENCY))
    if not jira.token_requests_started.acquire(timeout=SAFETY_NET_SECONDS):
        finish(runners)
        pytest.fail("no runner sent a refresh to Jira")
    callers = [in_thread(ask_for_every_token, seed) for seed in range(4)]
    results = finish(runners)
    for thread, _ in callers:
        thread.join(PROCESS_TIMEOUT_SECONDS)

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
    for _, outcome in callers:
        assert "error" not in outcome, repr(outcome.get("error"))
        wrong = {pk: token for pk, token in outcome["result"].items() if token != jira.current_tokens(keys[pk])[0]}
        assert wrong == {}, list(wrong.items())[:10]
    assert_each_refreshed_once_and_stored(jira, keys)
    # The race happened: the runners and the on-demand callers each refreshed some of the accounts (the runners
    # name theirs; every account was refreshed once, so the callers refreshed the others).
    by_runners = [name for _, out, _ in results for name in refreshed_names(out)]
    assert 0 < len(by_runners) < len(keys), len(by_runners)


def test_a_runner_skips_an_account_locked_by_another_and_a_waiter_sees_it_refreshed(jira):
    """In-process view of the row lock.

    While one transaction holds the account's lock (a refresh in progress elsewhere):
    - the command's path (skip_locked) skips the account at once, sending nothing;
    - an on-demand refresh (no skip_locked) waits for the lock, then finds the new pair and sends nothing.
    """
    (pk, key), = create_accounts(jira, 1, expires_in=timedelta(seconds=30)).items()
    locked, release = threading.Event(), threading.Event()

    def refresh_elsewhere():
        with transaction.atomic():
            account = ALMAccount.objects.select_for_update().get(pk=pk)
            locked.set()
            release.wait(SAFETY_NET_SECONDS)  # only reached when the test itself is stuck
            # The other runner's refresh at Jira, and what it stores once Jira answered.
            answer = requests.post(f"{jira.base_url}/rest/oauth2/latest/token", timeout=SAFETY_NET_SECONDS, data={
                "grant_type": "refresh_token", "refresh_token": account.refresh_token, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "redirect_uri": account.callback_url}).json()
            ALMAccount.objects.filter(pk=pk).update(
                access_token=answer["access_token"], refresh_token=answer["refresh_token"],
                token_expires_at=timezone.now() + timedelta(seconds=answer["expires_in"]))

    holder, holder_outcome = in_thread(refresh_elsewhere)
    try:
        wait_until(locked.is_set, "the other transaction to take the lock")

        skipped = services.refresh_account(account_id=pk, actor="runner 2", due_within=timedelta(minutes=15),
                                           skip_locked=True)
        assert skipped.outcome is RefreshOutcome.BUSY

        waiter, waiter_outcome = in_thread(lambda: services.valid_access_token(account=ALMAccount.objects.get(pk=pk)))
        wait_until(lambda: backends_waiting_for_a_lock() >= 1, "the on-demand refresh to wait for the lock")
    finally:
        release.set()
        holder.join(PROCESS_TIMEOUT_SECONDS)
    waiter.join(PROCESS_TIMEOUT_SECONDS)

    assert "error" not in holder_outcome, repr(holder_outcome.get("error"))
    assert "error" not in waiter_outcome, repr(waiter_outcome.get("error"))
    assert waiter_outcome["result"] == f"AT-{key}-1"
    assert jira.refreshes[key] == 1 and jira.rejected == []  # the other runner's refresh only
    assert ALMAccount.objects.get(pk=pk).status == Status.CONNECTED


def test_parallel_runners_refresh_each_account_connection_and_user_credential_exactly_once(jira):
    """4 cron runners at once over a mix of grants: 50 accounts' own connections and 3 people's own
    credentials on each (200 grants, all due).

    Both kinds are refreshed under their own row lock with SKIP LOCKED, and re-checked under it: each
    grant is refreshed once, by one runner, with its own refresh token, and every row ends up holding
    the pair Jira currently accepts. Jira holds the first token requests until more are in flight than
    one runner can send, so the runners must really overlap.
    """
    account_keys = create_accounts(jira, 50, expires_in=timedelta(minutes=5))
    credential_keys = create_people(jira, account_keys, 3, expires_in=timedelta(minutes=5))
    jira.hold_token_requests(until_in_flight=RUNNER_CONCURRENCY + 1)

    results = finish(start_runners(4, "--concurrency", str(RUNNER_CONCURRENCY)))

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
        assert "failed" not in out and "needs re-authorization" not in out, out[-3000:]
    assert jira.max_token_in_flight > RUNNER_CONCURRENCY, jira.max_token_in_flight
    refreshed_per_runner = [len(refreshed_names(out)) for _, out, _ in results]
    assert sum(1 for count in refreshed_per_runner if count) >= 2, refreshed_per_runner

    # Jira: every grant refreshed exactly once, no refresh token sent twice, nothing else asked.
    assert jira.rejected == [] and jira.unexpected == [], (jira.rejected + jira.unexpected)[:10]
    assert set(jira.refreshes) == set(account_keys.values()) | set(credential_keys.values())
    assert set(jira.refreshes.values()) == {1}, [(k, n) for k, n in jira.refreshes.items() if n != 1][:10]
    # The database: each row of either kind holds Jira's current pair of its own grant.
    for model, keys in ((ALMAccount, account_keys), (ALMCredential, credential_keys)):
        wrong = [pk for pk, a, r, s in model.objects.values_list("pk", "access_token", "refresh_token", "status")
                 if (a, r) != jira.current_tokens(keys[pk]) or s != Status.CONNECTED]
        assert wrong == [], (model.__name__, wrong[:10])
    for model, keys in ((ALMAccount, account_keys), (ALMCredential, credential_keys)):  # each counted once
        assert sorted(model.objects.values_list("refresh_count", flat=True)) == [1] * len(keys), model.__name__
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESH_FAILED).exists()
    # The runners' lines name each grant once between them; their summaries add up to both kinds.
    people = ALMCredential.objects.values_list("account__name", "user__username")
    assert sorted(name for _, out, _ in results for name in refreshed_names(out)) == sorted(
        [*ALMAccount.objects.values_list("name", flat=True), *(f"{name} ({user})" for name, user in people)])
    tried = [summary_counts(out) for _, out, _ in results]
    assert sum(a for a, _ in tried) >= len(account_keys) and sum(u for _, u in tried) >= len(credential_keys), tried


def test_parallel_runners_refresh_jira_cloud_and_data_center_grants_exactly_once(jira):
    """4 runners over both providers at once: 30 Data Center accounts, 30 Jira Cloud accounts (each its own site,
    the deployment's Atlassian app) and 2 people's own credentials on each Cloud account (120 grants, all due).

    Cloud grants go through the same lifecycle and the same row locks: each is refreshed once, at Atlassian's
    token endpoint with a JSON body (Jira Cloud kills the whole token family when a replaced refresh token is
    re-used after a short leeway, so "exactly once" matters even more), Data Center grants at their Jira.
    """
    dc_keys = create_accounts(jira, 30, expires_in=timedelta(minutes=5))
    cloud_keys = create_cloud_accounts(jira, 30, expires_in=timedelta(minutes=5))
    people_keys = create_people(jira, cloud_keys, 2, expires_in=timedelta(minutes=5))
    jira.hold_token_requests(until_in_flight=RUNNER_CONCURRENCY + 1)

    results = finish(start_runners(4, "--concurrency", str(RUNNER_CONCURRENCY), env=cloud_env(jira)))

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
        assert "failed" not in out and "needs re-authorization" not in out, out[-3000:]
    assert jira.max_token_in_flight > RUNNER_CONCURRENCY, jira.max_token_in_flight
    assert sum(1 for _, out, _ in results if refreshed_names(out)) >= 2, [out[-500:] for _, out, _ in results]
    # Atlassian and Jira: every grant refreshed exactly once, at its own provider's endpoint, nothing re-used.
    assert jira.rejected == [] and jira.unexpected == [], (jira.rejected + jira.unexpected)[:10]
    all_keys = {**dc_keys, **cloud_keys}
    assert set(jira.refreshes) == set(all_keys.values()) | set(people_keys.values())
    assert set(jira.refreshes.values()) == {1}, [(k, n) for k, n in jira.refreshes.items() if n != 1][:10]
    cloud_calls = jira.calls_to(CLOUD_TOKEN_PATH)
    assert len(cloud_calls) == len(cloud_keys) + len(people_keys)
    assert all(call.headers.get("Content-Type", "").startswith("application/json") for call in cloud_calls)
    assert len(jira.calls_to(TOKEN_PATH)) == len(dc_keys)
    # Each row of either kind holds its provider's current pair.
    for model, keys in ((ALMAccount, all_keys), (ALMCredential, people_keys)):
        wrong = [pk for pk, a, r, s in model.objects.values_list("pk", "access_token", "refresh_token", "status")
                 if (a, r) != jira.current_tokens(keys[pk]) or s != Status.CONNECTED]
        assert wrong == [], (model.__name__, wrong[:10])


def summary_counts(out: str) -> tuple[int, int]:
    """(account connections, user credentials) a runner's summary says it tried."""
    (line,) = [line for line in out.splitlines() if line.startswith("Summary: ")]
    match = re.search(r"\((\d+) account connections?, (\d+) user credentials?, ", line)
    assert match, line
    return int(match[1]), int(match[2])


def test_a_grant_being_refreshed_never_makes_another_grant_of_the_same_account_look_busy(jira):
    """A person's refresh and the account's own refresh lock different rows and must not wait for each other.

    A refresh writes its audit event, which references the account (and the credential); when it
    commits, PostgreSQL checks those foreign keys (Django makes them deferred) with a FOR KEY SHARE
    lock on the referenced rows. Were the grant's row lock a plain FOR UPDATE, that would conflict: a
    runner would skip the account's own connection as "another runner is refreshing it" while only a
    person's credential on it was committing, and a person's refresh, already answered by Jira, would
    wait at its commit for the account's refresh to end. The lock is taken here exactly as a refresh
    takes it (GrantRef.locked); the checks are made at once (SET CONSTRAINTS ALL IMMEDIATE) to hold
    the moment of the commit open.
    """
    keys = create_accounts(jira, 1, expires_in=timedelta(minutes=5))
    (account_id, account_key), = keys.items()
    (credential_id, credential_key), = create_people(jira, keys, 1, expires_in=timedelta(minutes=5)).items()

    def refresh_under_way(grant, locked, release):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            row = grant.locked()
            services.record_event(row, actor="runner 1", kind=AuthEvent.Kind.REFRESHED, ok=True,
                                  message="Token refreshed.")
            locked.set()
            release.wait(SAFETY_NET_SECONDS)  # only reached when the test itself is stuck

    # A person's refresh between its audit event and its commit: the account's own connection is refreshed.
    locked, release = threading.Event(), threading.Event()
    holder, holder_outcome = in_thread(refresh_under_way, services.GrantRef("user", credential_id), locked, release)
    try:
        wait_until(locked.is_set, "the person's refresh to write its event")
        result = services.refresh_account(account_id=account_id, actor="runner 2",
                                          due_within=timedelta(minutes=15), skip_locked=True)
    finally:
        release.set()
        holder.join(PROCESS_TIMEOUT_SECONDS)
    assert "error" not in holder_outcome, repr(holder_outcome.get("error"))
    assert result.outcome is RefreshOutcome.REFRESHED, result
    assert dict(jira.refreshes) == {account_key: 1}

    # The account's own refresh under way: a person's refresh on it completes without waiting for it.
    locked, release = threading.Event(), threading.Event()
    holder, holder_outcome = in_thread(refresh_under_way, services.GrantRef("account", account_id), locked, release)
    try:
        wait_until(locked.is_set, "the account's refresh to take its lock")
        person, person_outcome = in_thread(lambda: services.refresh_grant(
            grant=services.GrantRef("user", credential_id), actor="runner 2", due_within=None, skip_locked=True))
        person.join(SAFETY_NET_SECONDS / 3)
        waited = person.is_alive()
    finally:
        release.set()
        holder.join(PROCESS_TIMEOUT_SECONDS)
        person.join(PROCESS_TIMEOUT_SECONDS)
    assert "error" not in holder_outcome, repr(holder_outcome.get("error"))
    assert not waited, "the person's refresh waited for the account's refresh to commit"
    assert person_outcome["result"].outcome is RefreshOutcome.REFRESHED, person_outcome
    assert dict(jira.refreshes) == {account_key: 1, credential_key: 1}
    assert jira.rejected == []


# --------------------------------------------------------------------------
# --processes: the refreshes spread over worker processes (one process uses at most one core)
# --------------------------------------------------------------------------


def refresh_log_pids(err: str) -> Counter:
    """The processes that logged a refresh (LOG_FORMAT=json: every record names its process)."""
    pids = Counter()
    for line in err.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("message", "").startswith("Token refresh of "):
                pids[record["pid"]] += 1
    return pids


def test_worker_processes_refresh_each_grant_of_both_providers_exactly_once(jira):
    """One runner with --processes 2: two worker processes share --concurrency 8 over Data Center accounts, Jira
    Cloud accounts and people's credentials. Every grant is refreshed once, stored, and counted in the one summary
    of the main process; the refreshes really ran in the two workers (each logs its own process id)."""
    dc_keys = create_accounts(jira, 20, expires_in=timedelta(minutes=5))
    cloud_keys = create_cloud_accounts(jira, 20, expires_in=timedelta(minutes=5))
    people_keys = create_people(jira, cloud_keys, 2, expires_in=timedelta(minutes=5))
    all_keys = {**dc_keys, **cloud_keys}

    (runner,) = start_runners(1, "--concurrency", "8", "--processes", "2", "-v", "1",
                              env={**cloud_env(jira), "LOG_FORMAT": "json"})
    ((code, out, err),) = finish([runner])
    out = "\n".join(json.loads(line)["message"] for line in out.splitlines())  # LOG_FORMAT=json: stdout too

    assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
    assert jira.rejected == [] and jira.unexpected == [], (jira.rejected + jira.unexpected)[:10]
    assert set(jira.refreshes) == set(all_keys.values()) | set(people_keys.values())
    assert set(jira.refreshes.values()) == {1}
    for model, keys in ((ALMAccount, all_keys), (ALMCredential, people_keys)):
        wrong = [pk for pk, a, r, s in model.objects.values_list("pk", "access_token", "refresh_token", "status")
                 if (a, r) != jira.current_tokens(keys[pk]) or s != Status.CONNECTED]
        assert wrong == [], (model.__name__, wrong[:10])
    summary = [line for line in out.splitlines() if line.startswith("Summary: ")]
    assert summary == [f"Summary: {len(all_keys) + len(people_keys)} refreshed (40 account connections, "
                       f"{len(people_keys)} user credentials, " + summary[0].split(", ", 2)[2]], summary
    assert "concurrency 8 in 2 processes)." in summary[0]
    assert len(refreshed_names(out)) == len(all_keys) + len(people_keys)
    pids = refresh_log_pids(err)
    assert len(pids) == 2 and runner.pid not in pids and sum(pids.values()) == len(jira.refreshes), pids


def test_a_signal_lets_the_worker_processes_finish_their_refreshes_and_stops_the_run(jira):
    """SIGTERM to the whole process group (what systemd does) while the workers wait on a slow Jira: the workers
    ignore it, finish and store every refresh they hold (Jira has rotated those grants), the main process hands
    out nothing more and exits 143 with the untried count."""
    jira.latency = 1.0
    keys = create_accounts(jira, 40, expires_in=timedelta(minutes=5))
    (runner,) = [subprocess.Popen([sys.executable, "manage.py", "refresh_tokens", "--concurrency", "4",
                                   "--processes", "2"], cwd=REPO_ROOT, env=command_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True)]
    try:
        for _ in range(4):
            assert jira.token_requests_started.acquire(timeout=SAFETY_NET_SECONDS), "no refresh started"
        os.killpg(runner.pid, signal.SIGTERM)
        out, err = runner.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.communicate()

    assert runner.returncode == 143, f"{out[-3000:]}\n{err[-3000:]}"
    refreshed = sum(jira.refreshes.values())
    assert 4 <= refreshed < len(keys) and jira.rejected == [], (refreshed, jira.rejected)
    assert out.count(": refreshed — ") == refreshed
    # Every grant Jira rotated was stored; the others keep their old (still live) pair.
    stored = dict(ALMAccount.objects.values_list("pk", "refresh_token"))
    assert all(stored[pk] == jira.current_tokens(key)[1] for pk, key in keys.items())
    assert f"Stopped early (SIGTERM): {len(keys) - refreshed} account connections left untried." in out


def test_a_killed_worker_process_stops_the_run_and_the_other_worker_stores_what_it_holds(jira):
    """A worker killed mid-refresh (the OOM killer, an operator's kill -9): the refreshes it held end as failures
    naming it, nothing more is handed out, the run fails (exit 1) — and the other worker still stores every
    refresh it had under way (Jira has rotated those grants: only that worker holds their new pair)."""
    jira.latency = 1.0
    keys = create_accounts(jira, 40, expires_in=timedelta(minutes=5))
    (runner,) = start_runners(1, "--concurrency", "4", "--processes", "2")
    try:
        for _ in range(4):
            assert jira.token_requests_started.acquire(timeout=SAFETY_NET_SECONDS), "no refresh started"
        children = Path(f"/proc/{runner.pid}/task/{runner.pid}/children").read_text().split()
        # The workers, not multiprocessing's resource tracker (spawn starts one too).
        workers = sorted(int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes())
        assert len(workers) == 2, children
        os.kill(workers[0], signal.SIGKILL)
        out, err = runner.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()

    assert runner.returncode == 1, f"{out[-3000:]}\n{err[-3000:]}"
    assert re.search(r"refresh worker refresh_tokens-[12] ended \(exit code -9\)", out), out[-3000:]
    assert "The run failed: the rest left untried." in out and "A refresh stopped unexpectedly" in err, err[-2000:]
    # The other worker's refreshes were stored: every grant Jira rotated that a live process received is stored.
    stored = dict(ALMAccount.objects.values_list("pk", "refresh_token"))
    refreshed = [pk for pk, key in keys.items() if stored[pk] == jira.current_tokens(key)[1] and jira.refreshes[key]]
    assert len(refreshed) == out.count(": refreshed — ") >= 1, out[-3000:]
    assert sum(jira.refreshes.values()) < len(keys)  # nothing more was handed out after the kill
