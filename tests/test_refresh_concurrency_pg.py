"""Never two refreshes of one refresh token: several runners at once, on PostgreSQL (issue 4).

Real processes (`manage.py refresh_tokens`) and real threads against a local
token endpoint that behaves like Jira's: every refresh rotates both tokens,
an old refresh token gets invalid_grant, and every request is counted.

PostgreSQL only (row locks, SKIP LOCKED). Without it these tests skip locally;
with CI=true they fail, so CI cannot pass without running them. Run them with:

    DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis .venv/bin/python -m pytest \
        tests/test_refresh_concurrency_pg.py
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, AuthEvent
from alm_accounts.services import RefreshOutcome

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN_PATH = "/rest/oauth2/latest/token"
CLIENT_ID, CLIENT_SECRET = "pg-client", "CLIENTSECRET-pg-5e6f"
LATENCY_SECONDS = 0.02  # Jira takes a moment: long enough for runners to overlap
PROCESS_TIMEOUT_SECONDS = 300
SAFETY_NET_SECONDS = 30  # no test waits this long unless something is broken
Status = ALMAccount.Status


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor == "postgresql":
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"These tests need PostgreSQL, but the database is {connection.vendor}. With CI=true they must run: "
            "set DATABASE_URL=postgres://... (see scripts/start_postgres.sh), or deselect them with "
            "-m 'not postgres' in a run that is not meant to use PostgreSQL.",
            pytrace=False,
        )
    pytest.skip("needs PostgreSQL: DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis")


# --------------------------------------------------------------------------
# A token endpoint that rotates and counts, like Jira's
# --------------------------------------------------------------------------


class TokenEndpoint:
    """The state of Jira's OAuth provider for a set of grants (one per account).

    Grant `key` starts with refresh token RT-<key>-0 / access token AT-<key>-0; refresh n issues
    RT-<key>-n / AT-<key>-n and kills the previous refresh token at once.
    """

    def __init__(self, latency: float = LATENCY_SECONDS):
        self.latency = latency
        self.lock = threading.Lock()
        self.owner: dict[str, str] = {}  # live refresh token -> grant key
        self.generation: dict[str, int] = {}  # grant key -> refreshes so far
        self.redirect_uri: dict[str, str] = {}  # grant key -> the account's callback URL
        self.refreshes: Counter[str] = Counter()  # grant key -> successful refreshes
        self.rejected: list[str] = []  # why requests were refused (re-used token, bad request)

    def add_grant(self, key: str, redirect_uri: str) -> tuple[str, str]:
        self.owner[f"RT-{key}-0"] = key
        self.generation[key] = 0
        self.redirect_uri[key] = redirect_uri
        return f"AT-{key}-0", f"RT-{key}-0"

    def current_tokens(self, key: str) -> tuple[str, str]:
        n = self.generation[key]
        return f"AT-{key}-{n}", f"RT-{key}-{n}"

    def answer(self, form: dict[str, str]) -> tuple[int, dict]:
        time.sleep(self.latency)
        sent = form.get("refresh_token", "")
        with self.lock:
            key = self.owner.get(sent)
            if form.get("grant_type") != "refresh_token" or (form.get("client_id"), form.get("client_secret")) != (
                CLIENT_ID, CLIENT_SECRET
            ):
                self.rejected.append(f"bad request for {sent}: {sorted(form)}")
                return 401, {"error": "invalid_client"}
            if key is None:
                self.rejected.append(f"re-used or unknown refresh token {sent}")
                return 400, {"error": "invalid_grant", "error_description": "Refresh token is invalid"}
            if form.get("redirect_uri") != self.redirect_uri[key]:
                self.rejected.append(f"wrong redirect_uri for {key}: {form.get('redirect_uri')!r}")
                return 400, {"error": "invalid_grant"}
            del self.owner[sent]
            self.generation[key] += 1
            self.refreshes[key] += 1
            access, refresh = self.current_tokens(key)
            self.owner[refresh] = key
        return 200, {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                     "expires_in": 7200, "scope": "ADMIN"}


@pytest.fixture
def jira():
    """(endpoint, base_url) of a local token endpoint in a thread."""
    endpoint = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            if self.path != TOKEN_PATH or self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                endpoint.rejected.append(f"unexpected request {self.path} {self.headers.get('Content-Type')}")
                status, answer = 404, {"error": "not_found"}
            else:
                status, answer = endpoint.answer({k: v[0] for k, v in parse_qs(body).items()})
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def create_accounts(endpoint: TokenEndpoint, base_url: str, count: int, *, expires_in: timedelta) -> dict[int, str]:
    """`count` connected accounts whose access tokens expire in `expires_in`; {account id: grant key}."""
    now = timezone.now()
    accounts = [
        ALMAccount(name=f"Jira {i:04}", base_url=base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   token_expires_at=now + expires_in, token_scope="ADMIN", status=Status.CONNECTED,
                   connected_at=now - timedelta(days=1))
        for i in range(count)
    ]
    for i, account in enumerate(accounts):
        account.access_token, account.refresh_token = endpoint.add_grant(f"a{i:04}", account.callback_url)
    ALMAccount.objects.bulk_create(accounts)
    return {pk: f"a{int(name.split()[1]):04}" for pk, name in ALMAccount.objects.values_list("pk", "name")}


def command_env() -> dict[str, str]:
    """The environment of a `manage.py` process using this test database (pytest-django's test_<name>)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test", "DATABASE_URL": url}


def start_runners(count: int, *args: str) -> list[subprocess.Popen]:
    argv = [sys.executable, "manage.py", "refresh_tokens", *args]
    env = command_env()
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


def assert_each_refreshed_once_and_stored(endpoint: TokenEndpoint, keys: dict[int, str]):
    assert endpoint.rejected == [], endpoint.rejected[:10]
    assert sorted(endpoint.refreshes.values()) == [1] * len(keys), [
        (k, n) for k, n in endpoint.refreshes.items() if n != 1][:10]
    assert set(endpoint.refreshes) == set(keys.values())
    # Every account holds Jira's current pair: nothing older was written over a newer one.
    stored = {pk: (a, r, s) for pk, a, r, s in ALMAccount.objects.values_list(
        "pk", "access_token", "refresh_token", "status")}
    wrong = [(pk, s) for pk, (a, r, s) in stored.items()
             if (a, r) != endpoint.current_tokens(keys[pk]) or s != Status.CONNECTED]
    assert wrong == [], wrong[:10]
    assert not ALMAccount.objects.filter(status=Status.NEEDS_REAUTHORIZATION).exists()
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESH_FAILED).exists()
    assert AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESHED).count() == len(keys)


def in_thread(target, *args):
    """Run target in a thread with its own database connection, closed at the end."""
    outcome = {}

    def run():
        try:
            outcome["result"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


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


def test_parallel_runners_refresh_every_due_account_exactly_once(jira):
    """4 cron runners start at once (no --force), 4 threads each, 200 due accounts.

    Each takes an account's row lock or skips it when locked (SKIP LOCKED); one that gets the lock
    after another runner refreshed the account sees it is no longer due and leaves it.
    """
    endpoint, base_url = jira
    keys = create_accounts(endpoint, base_url, 200, expires_in=timedelta(minutes=5))

    results = finish(start_runners(4, "--concurrency", "4"))

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
        assert "Summary:" in out
        assert "failed" not in out and "needs re-authorization" not in out, out[-3000:]
    assert_each_refreshed_once_and_stored(endpoint, keys)
    # Between them the runners report every account refreshed once.
    refreshed_lines = [line for _, out, _ in results for line in out.splitlines() if ": refreshed — " in line]
    assert sorted(line.split(":")[0] for line in refreshed_lines) == sorted(
        ALMAccount.objects.values_list("name", flat=True))


def test_on_demand_tokens_racing_the_runners_never_resend_a_refresh_token(jira):
    """Code asking for a token (valid_access_token) while two cron runners refresh the same accounts.

    Every account is due for both (30 s left). Whoever refreshes first, each account is refreshed once,
    and every on-demand caller gets Jira's current access token.
    """
    endpoint, base_url = jira
    keys = create_accounts(endpoint, base_url, 100, expires_in=timedelta(seconds=30))
    ids = list(keys)

    def ask_for_every_token(seed: int) -> dict[int, str]:
        order = ids[:]
        random.Random(seed).shuffle(order)
        return {pk: services.valid_access_token(account=ALMAccount.objects.get(pk=pk), actor=f"caller-{seed}")
                for pk in order}

    runners = start_runners(2, "--concurrency", "4")
    callers = [in_thread(ask_for_every_token, seed) for seed in range(4)]
    results = finish(runners)
    for thread, _ in callers:
        thread.join(PROCESS_TIMEOUT_SECONDS)

    for code, out, err in results:
        assert code == 0, f"exit {code}\n{out[-3000:]}\n{err[-3000:]}"
    for _, outcome in callers:
        assert "error" not in outcome, repr(outcome.get("error"))
        wrong = {pk: token for pk, token in outcome["result"].items() if token != endpoint.current_tokens(keys[pk])[0]}
        assert wrong == {}, list(wrong.items())[:10]
    assert_each_refreshed_once_and_stored(endpoint, keys)


def test_a_runner_skips_an_account_locked_by_another_and_a_waiter_sees_it_refreshed(jira):
    """In-process view of the row lock.

    While one transaction holds the account's lock (a refresh in progress elsewhere):
    - the command's path (skip_locked) skips the account at once, sending nothing;
    - an on-demand refresh (no skip_locked) waits for the lock, then finds the new pair and sends nothing.
    """
    endpoint, base_url = jira
    (pk, key), = create_accounts(endpoint, base_url, 1, expires_in=timedelta(seconds=30)).items()
    locked, release = threading.Event(), threading.Event()

    def refresh_elsewhere():
        with transaction.atomic():
            ALMAccount.objects.select_for_update().get(pk=pk)
            locked.set()
            release.wait(SAFETY_NET_SECONDS)  # only reached when the test itself is stuck
            # What the other runner stores once Jira answered it.
            endpoint.owner.pop(f"RT-{key}-0")
            endpoint.generation[key] = 1
            ALMAccount.objects.filter(pk=pk).update(
                access_token=f"AT-{key}-1", refresh_token=f"RT-{key}-1",
                token_expires_at=timezone.now() + timedelta(hours=2))

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
    assert endpoint.refreshes[key] == 0 and endpoint.rejected == []
    assert ALMAccount.objects.get(pk=pk).status == Status.CONNECTED
