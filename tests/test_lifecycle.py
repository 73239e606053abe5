"""Token lifecycle (issue 4): refresh_tokens, on-demand refresh, Test connection, Disconnect, audit trail.

Jira is mocked with `responses` (fixture `mocked_jira`). The command is run the
way manage.py runs it (`run_from_argv`), so exit codes are the real ones.
Runs on SQLite and, with DATABASE_URL=postgres://..., on PostgreSQL.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from urllib3.exceptions import MaxRetryError, NewConnectionError

from alm_accounts import services
from alm_accounts.models import ALMAccount, AuthEvent
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    MYSELF_URL,
    REFRESH_TOKEN,
    REVOKE_URL,
    SERVER_INFO_URL,
    TOKEN_URL,
    Run,
    broken_connection,
    button_url,
    form_of,
    page_text,
    staff_user,
    token_answer,
)
from tests.factories import AccountFactory

Status = ALMAccount.Status
DUE = timedelta(minutes=5)  # the accounts the refresher takes now
Kind = AuthEvent.Kind
SECRET_PATTERN = re.compile(r"ACCESSTOKEN|REFRESHTOKEN|CLIENTSECRET")
COMMAND_ACTOR = "manage.py refresh_tokens"
ADMIN_ACTOR = "jira-admin-user"  # the conftest admin_user
REPO_ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------




@pytest.fixture
def manage(run_command):
    """Run `manage.py refresh_tokens ARGS` in-process (run_command), `--concurrency 1` added unless given: with
    the `db` fixture the rows live in the test's open transaction, which worker threads (own connections) cannot
    see on PostgreSQL."""

    def run(*args: str) -> Run:
        return run_command(*args, *(() if "--concurrency" in args else ("--concurrency", "1")))

    return run


class RotatingTokenEndpoint:
    """Jira's token endpoint for many accounts: each refresh token works once, then invalid_grant."""

    def __init__(self, expires_in: int = 7200):
        self.expires_in = expires_in
        self.used: list[str] = []
        self.answer: responses.BaseResponse | None = None  # its registration in mocked_jira

    def __call__(self, request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        sent = form["refresh_token"]
        if sent in self.used:
            return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "Token was already used"})
        self.used.append(sent)
        base = sent.removeprefix("REFRESHTOKEN-")
        return 200, {"Content-Type": "application/json"}, json.dumps({
            "access_token": f"ACCESSTOKEN-{base}-new", "refresh_token": f"REFRESHTOKEN-{base}-new",
            "token_type": "bearer", "expires_in": self.expires_in, "scope": "ADMIN",
        })


@pytest.fixture
def rotating(mocked_jira):
    endpoint = RotatingTokenEndpoint()
    endpoint.answer = mocked_jira.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    return endpoint


def token_posts(mocked_jira) -> list[dict[str, str]]:
    return [form_of(c) for c in mocked_jira.calls if c.request.url == TOKEN_URL]


def invalid_grant(description: str = "The refresh token is expired or revoked") -> dict:
    return {"json": {"error": "invalid_grant", "error_description": description}, "status": 400}


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens on Jira's port."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, TOKEN_URL, reason=reason))


def events_of(account: ALMAccount) -> list[AuthEvent]:
    return list(AuthEvent.objects.filter(account=account))  # newest first (model ordering)


def assert_tokens_untouched(account: ALMAccount):
    before = (account.access_token, account.refresh_token, account.token_expires_at)
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token, account.token_expires_at) == before


# --------------------------------------------------------------------------
# The refresh request and what is stored
# --------------------------------------------------------------------------


def test_refresh_stores_the_rotated_pair_and_new_expiry_in_one_save(connected_account, mocked_jira, manage):
    mocked_jira.post(TOKEN_URL, json=token_answer(2, expires_in=3600))
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        run = manage()
    after = timezone.now()

    assert run.code == 0, run
    connected_account.refresh_from_db()
    assert connected_account.access_token == "ACCESSTOKEN-2-e1d2c3b4"
    assert connected_account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    # The expiry comes from expires_in (3600 here), counted from the refresh.
    assert before + timedelta(seconds=3600) <= connected_account.token_expires_at <= after + timedelta(seconds=3600)
    assert before <= connected_account.last_refreshed_at <= after
    assert connected_account.status == Status.CONNECTED
    assert connected_account.last_error == ""
    # Both tokens and the expiry are written by one UPDATE: no moment where the new refresh
    # token is stored without its access token (or the other way round).
    updates = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith("UPDATE") and '"alm_accounts_almaccount"' in q["sql"]]
    writes_tokens = [sql for sql in updates if '"refresh_token"' in sql or '"access_token"' in sql]
    assert len(writes_tokens) == 1, updates
    assert all(f'"{column}"' in writes_tokens[0] for column in ("access_token", "refresh_token", "token_expires_at"))


def test_refresh_request_is_form_encoded_with_redirect_uri_and_client_credentials(
    connected_account, mocked_jira, manage
):
    mocked_jira.post(TOKEN_URL, json=token_answer())
    assert manage().code == 0

    (call,) = mocked_jira.calls
    assert call.request.method == "POST"
    assert call.request.url == TOKEN_URL
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in call.request.headers  # Jira does not support HTTP Basic client auth
    assert form_of(call) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH_TOKEN,
        # Jira DC answers a refresh without redirect_uri with a bare invalid_grant.
        "redirect_uri": connected_account.callback_url,
        "client_id": "client-id-123",
        "client_secret": CLIENT_SECRET,
    }


def test_the_next_refresh_sends_the_rotated_refresh_token(connected_account, rotating, manage):
    assert manage("--force").code == 0
    assert manage("--force").code == 0
    assert rotating.used == [REFRESH_TOKEN, "REFRESHTOKEN-1-a9b8c7d6-new"]
    connected_account.refresh_from_db()
    assert connected_account.refresh_token == "REFRESHTOKEN-1-a9b8c7d6-new-new"


# --------------------------------------------------------------------------
# Which accounts: the window, --force, --dry-run, --account
# --------------------------------------------------------------------------


@pytest.fixture
def fleet(db):
    """Accounts in every state the command must tell apart."""
    return {
        "due": AccountFactory(name="Due in 5 min", expires_in=timedelta(minutes=5)),
        "expired": AccountFactory(name="Expired", expires_in=timedelta(minutes=-30)),
        "unknown": AccountFactory(name="Expiry unknown", expires_in=None),
        "errored": AccountFactory(name="Last refresh failed", expires_in=timedelta(minutes=2), status=Status.ERROR),
        "later": AccountFactory(name="Due in 30 min", expires_in=timedelta(minutes=30)),
        "fresh": AccountFactory(name="Fresh", expires_in=timedelta(hours=2)),
        "dead": AccountFactory(name="Dead grant", expires_in=timedelta(minutes=5), status=Status.NEEDS_REAUTHORIZATION),
        "new": AccountFactory(name="Never connected", connected=False),
    }


def refreshed_names(rotating, fleet) -> set[str]:
    by_token = {a.refresh_token: a.name for a in fleet.values() if a.refresh_token}
    return {by_token[t] for t in rotating.used}


def test_default_window_refreshes_only_tokens_expiring_within_15_minutes(fleet, rotating, manage):
    run = manage()

    assert run.code == 0, run
    expected = {"Due in 5 min", "Expired", "Expiry unknown", "Last refresh failed"}
    assert refreshed_names(rotating, fleet) == expected
    assert sorted(line.split(":")[0] for line in run.lines[:-1]) == sorted(expected)
    assert all(": refreshed — Token refreshed; expires " in line for line in run.lines[:-1])
    assert run.lines[-1].startswith("Summary: 4 refreshed (4 account connections, 0 user credentials")
    for key in ("later", "fresh", "dead", "new"):
        assert_tokens_untouched(fleet[key])
    errored = ALMAccount.objects.get(pk=fleet["errored"].pk)
    assert errored.status == Status.CONNECTED  # a successful refresh clears the error state


def test_window_option_widens_the_window(fleet, rotating, manage):
    run = manage("--window", "45")

    assert run.code == 0, run
    assert refreshed_names(rotating, fleet) == {
        "Due in 5 min", "Expired", "Expiry unknown", "Last refresh failed", "Due in 30 min"}


def test_force_refreshes_every_connected_account_but_not_dead_or_unconnected_ones(fleet, rotating, manage):
    run = manage("--force")

    assert run.code == 0, run
    assert refreshed_names(rotating, fleet) == {
        "Due in 5 min", "Expired", "Expiry unknown", "Last refresh failed", "Due in 30 min", "Fresh"}
    assert_tokens_untouched(fleet["dead"])
    assert ALMAccount.objects.get(pk=fleet["dead"].pk).status == Status.NEEDS_REAUTHORIZATION
    assert ALMAccount.objects.get(pk=fleet["new"].pk).refresh_token is None


def test_dry_run_says_what_would_be_refreshed_and_changes_nothing(fleet, rotating, manage, mocked_jira):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage("--dry-run")

    assert run.code == 0, run
    assert rotating.used == []
    assert sorted(line.split(":")[0] for line in run.lines[:-1]) == sorted(
        ["Due in 5 min", "Expired", "Expiry unknown", "Last refresh failed"])
    assert all("would refresh" in line for line in run.lines[:-1])
    assert run.lines[-1].startswith("Summary: 4 would refresh")
    for account in fleet.values():
        assert_tokens_untouched(account)
    assert not AuthEvent.objects.exists()


def test_dry_run_with_force_lists_every_connected_account(fleet, rotating, manage, mocked_jira):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage("--dry-run", "--force")

    assert run.code == 0, run
    assert rotating.used == []
    assert {line.split(":")[0] for line in run.lines[:-1]} == {
        "Due in 5 min", "Expired", "Expiry unknown", "Last refresh failed", "Due in 30 min", "Fresh"}


def test_dry_run_of_a_named_account_that_is_not_due_does_not_claim_it_would_refresh(fleet, rotating, manage,
                                                                                     mocked_jira):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage("--dry-run", "--account", "Due in 30 min", "--account", "Dead grant")

    assert run.code == 0, run
    assert rotating.used == []
    assert "would refresh" not in run.out
    assert run.lines[0].startswith("Dead grant: not connected")
    assert run.lines[1].startswith("Due in 30 min: not due")
    # ... and what the real run then does agrees with it: nothing.
    real = manage("--account", "Due in 30 min", "--account", "Dead grant")
    assert real.code == 0, real
    assert rotating.used == []


def test_dry_run_of_a_named_due_account_says_it_would_refresh(fleet, rotating, manage, mocked_jira):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage("--dry-run", "--account", "Expired")

    assert run.code == 0, run
    assert run.lines[0].startswith("Expired: would refresh")
    assert rotating.used == []


def test_account_option_selects_by_name_and_by_id(fleet, rotating, manage):
    run = manage("--account", "Expired")
    assert run.code == 0, run
    assert refreshed_names(rotating, fleet) == {"Expired"}

    run = manage("--account", str(fleet["due"].pk), "--account", "Expiry unknown")
    assert run.code == 0, run
    assert refreshed_names(rotating, fleet) == {"Expired", "Due in 5 min", "Expiry unknown"}
    assert {line.split(":")[0] for line in run.lines[:-1]} == {"Due in 5 min", "Expiry unknown"}


def test_named_account_that_is_not_due_is_reported_not_due_unless_forced(fleet, rotating, manage):
    run = manage("--account", "Due in 30 min")
    assert run.code == 0, run
    assert rotating.used == []
    assert run.lines[0].startswith("Due in 30 min: not due — expires ")

    run = manage("--account", "Due in 30 min", "--force")
    assert run.code == 0, run
    assert refreshed_names(rotating, fleet) == {"Due in 30 min"}


def test_unknown_account_exits_2_and_refreshes_nothing(fleet, rotating, manage, mocked_jira):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage("--account", "Expired", "--account", "No such account")

    assert run.code == 2
    assert "No ALM account named or numbered 'No such account'" in run.err
    assert rotating.used == []


@pytest.mark.parametrize("args", [
    ["--window", "0"], ["--window", "soon"], ["--concurrency", "0"], ["--concurrency", "65"], ["--frobnicate"],
])
def test_bad_arguments_exit_2(fleet, rotating, manage, mocked_jira, args):
    mocked_jira.must_not_be_asked(rotating.answer)  # nothing is refreshed
    run = manage(*args)

    assert run.code == 2, run
    assert run.err.strip()
    assert rotating.used == []


def test_bad_arguments_exit_2_from_the_real_command_line():
    """The same through manage.py itself (argument errors stop before the database is used)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test"}
    done = subprocess.run([sys.executable, "manage.py", "refresh_tokens", "--window", "0"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 2, done
    assert "--window" in done.stderr


# --------------------------------------------------------------------------
# Output and exit codes
# --------------------------------------------------------------------------


def test_all_refreshed_exit_0_with_a_line_per_account_and_a_summary(rotating, manage, db):
    for name in ("Jira A", "Jira B"):
        AccountFactory(name=name, expires_in=DUE)

    run = manage()

    assert run.code == 0
    assert len(run.lines) == 3
    assert run.lines[0].startswith("Jira A: refreshed — Token refreshed; expires ")
    assert run.lines[1].startswith("Jira B: refreshed — Token refreshed; expires ")
    assert re.match(r"Summary: 2 refreshed \(2 account connections, 0 user credentials, [\d.]+ s, concurrency 1\)\.$",
                    run.lines[2])


def test_nothing_to_refresh_exit_0(fleet, mocked_jira, manage):
    ALMAccount.objects.update(token_expires_at=timezone.now() + timedelta(hours=2))

    run = manage()

    assert run.code == 0
    assert run.lines == [run.lines[-1]] and run.lines[-1].startswith("Summary: nothing to refresh")
    assert len(mocked_jira.calls) == 0


def test_any_failure_exits_1_and_the_other_accounts_are_still_refreshed(mocked_jira, manage, db):
    AccountFactory(name="Jira A", expires_in=DUE)
    AccountFactory(name="Jira B", expires_in=DUE)
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token expired"))
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    run = manage()

    assert run.code == 1
    assert run.lines[0].startswith("Jira A: needs re-authorization — ")
    assert "Refresh token expired" in run.lines[0]
    assert run.lines[1].startswith("Jira B: refreshed")
    assert run.lines[2].startswith("Summary: 1 needs re-authorization, 1 refreshed (2 account connections")
    assert ALMAccount.objects.get(name="Jira B").refresh_token == "REFRESHTOKEN-2-a9b8c7d6"


def test_verbosity_0_prints_nothing_when_everything_succeeds(rotating, manage, db):
    AccountFactory(name="Jira A", expires_in=DUE)
    AccountFactory(name="Jira B", expires_in=DUE)

    run = manage("-v", "0")

    assert run.code == 0
    assert run.out == ""
    assert len(rotating.used) == 2


def test_verbosity_0_prints_only_the_failures(mocked_jira, manage, db):
    AccountFactory(name="Jira A", expires_in=DUE)
    AccountFactory(name="Jira B", expires_in=DUE)
    AccountFactory(name="Jira C", expires_in=DUE)
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    mocked_jira.post(TOKEN_URL, body="<html>Service Temporarily Unavailable</html>", status=503)
    mocked_jira.post(TOKEN_URL, body="<html>Service Temporarily Unavailable</html>", status=503)
    mocked_jira.post(TOKEN_URL, body="<html>Service Temporarily Unavailable</html>", status=503)
    mocked_jira.post(TOKEN_URL, json=token_answer(3))

    run = manage("-v", "0")

    assert run.code == 1
    assert "Jira A" not in run.out and "Jira C" not in run.out
    assert run.lines[0].startswith("Jira B: failed — Could not complete the call to Jira: Jira's token endpoint "
                                   "answered HTTP 503")
    assert run.lines[1].startswith("Summary: 1 failed, 2 refreshed")
    assert len(run.lines) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrency_option_refreshes_each_account_once(rotating, manage):
    """Worker threads need committed rows (hence transaction=True). SQLite runs them one at a time."""
    accounts = [AccountFactory(name=f"Jira {i:02}", expires_in=DUE) for i in range(12)]

    run = manage("--concurrency", "4")

    assert run.code == 0, run
    assert sorted(rotating.used) == sorted(a.refresh_token for a in accounts)
    assert len(run.lines) == 13 and run.lines[-1].startswith("Summary: 12 refreshed (12 account connections")
    if connection.vendor == "sqlite":
        assert "SQLite serialises refreshes: running with --concurrency 1." in run.err
        assert run.lines[-1].endswith("concurrency 1).")
    else:
        # The 12 accounts are on one Jira: at most REFRESH_CONCURRENCY_PER_JIRA (4) in flight there, said so.
        assert run.lines[-1].endswith("concurrency 4). Paced to at most 4 token requests in flight per Jira host; "
                                      "the most at once: https://jira.example.com 4.")
    for account in accounts:
        account.refresh_from_db()
        assert account.refresh_token.endswith("-old-new")


# --------------------------------------------------------------------------
# invalid_grant: the grant is dead (under the row lock nobody else can have used the refresh token)
# --------------------------------------------------------------------------

NEWER_ACCESS, NEWER_REFRESH = "ACCESSTOKEN-winner-77", "REFRESHTOKEN-winner-77"


def test_dead_grant_needs_reauthorization_with_jiras_description_and_nothing_is_deleted(
    connected_account, mocked_jira, manage, admin_client
):
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token expired after 90 days"))

    run = manage()

    assert run.code == 1
    assert "needs re-authorization" in run.out and "Refresh token expired after 90 days" in run.out
    connected_account.refresh_from_db()
    assert connected_account.status == Status.NEEDS_REAUTHORIZATION
    assert "Click Get Auth Token to authorize again" in connected_account.last_error
    assert "Jira said: invalid_grant — Refresh token expired after 90 days" in connected_account.last_error
    # Nothing deleted: the admin can still Disconnect (which revokes), or re-authorize.
    assert connected_account.access_token == ACCESS_TOKEN
    assert connected_account.refresh_token == REFRESH_TOKEN
    assert connected_account.token_expires_at is not None
    assert connected_account.connected_as_display_name == "Jira Admin"
    (event,) = events_of(connected_account)
    assert (event.kind, event.outcome, event.actor) == (Kind.REFRESH_FAILED, AuthEvent.Outcome.FAILED, COMMAND_ACTOR)
    assert "Refresh token expired after 90 days" in event.message

    page = page_text(admin_client.get(connected_account.get_admin_url()))
    assert "Needs re-authorization" in page
    assert "Refresh token expired after 90 days" in page

    # The next cron run leaves it alone (a dead grant is not retried every 5 minutes) and succeeds.
    again = manage()
    assert again.code == 0
    assert len(mocked_jira.calls) == 1


# --------------------------------------------------------------------------
# Retries: only where Jira cannot have used the refresh token
# --------------------------------------------------------------------------

RETRIED = {
    "connection refused": lambda: {"body": refused()},
    "connect timeout": lambda: {"body": requests.ConnectTimeout("connect timed out")},
    "HTTP 502": lambda: {"body": "<html>Bad Gateway</html>", "status": 502},
    "HTTP 503": lambda: {"body": "<html>Service Unavailable</html>", "status": 503},
    "HTTP 429": lambda: {"body": "", "status": 429},
}


@pytest.mark.parametrize("failure", list(RETRIED))
def test_refresh_is_retried_when_jira_cannot_have_used_the_token(connected_account, mocked_jira, manage, failure):
    """The connection was never made (refused, connect timeout), or a proxy / Jira refused the
    request before processing it (429/502/503): the refresh token is still unused, so sending it
    again is safe. JIRA_RETRY_BACKOFF is "0,0" in tests: two retries, no waiting."""
    mocked_jira.post(TOKEN_URL, **RETRIED[failure]())
    mocked_jira.post(TOKEN_URL, **RETRIED[failure]())
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    run = manage()

    assert run.code == 0, run
    assert [f["refresh_token"] for f in token_posts(mocked_jira)] == [REFRESH_TOKEN] * 3
    connected_account.refresh_from_db()
    assert connected_account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert connected_account.status == Status.CONNECTED


def test_retries_are_bounded_and_a_persistent_outage_leaves_the_tokens_alone(connected_account, mocked_jira, manage):
    mocked_jira.post(TOKEN_URL, body="<html>Service Unavailable</html>", status=503)

    run = manage()

    assert run.code == 1
    assert len(token_posts(mocked_jira)) == 3  # the first attempt + one per JIRA_RETRY_BACKOFF entry
    assert "Jira - Core Banking: failed — Could not complete the call to Jira: Jira's token endpoint answered " \
           "HTTP 503" in run.out
    assert "Summary: 1 failed" in run.out
    assert_tokens_untouched(connected_account)
    # An outage is not a dead grant: the status stays, the next run tries again.
    assert connected_account.status == Status.CONNECTED
    assert "HTTP 503" in connected_account.last_error
    assert events_of(connected_account)[0].kind == Kind.REFRESH_FAILED
    mocked_jira.replace(responses.POST, TOKEN_URL, json=token_answer(2))
    assert manage().code == 0
    connected_account.refresh_from_db()
    assert connected_account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert connected_account.last_error == ""


NOT_RETRIED = {
    "read timeout": lambda: {"body": requests.ReadTimeout("read timed out")},
    "connection dropped after sending": lambda: {"body": broken_connection()},
    "HTTP 500": lambda: {"body": "<html>Internal Server Error</html>", "status": 500},
    "HTTP 504": lambda: {"body": "<html>Gateway Timeout</html>", "status": 504},
    "HTTP 200 that is not JSON": lambda: {"body": "<html>Log in</html>", "status": 200},
}


@pytest.mark.parametrize("failure", list(NOT_RETRIED))
def test_refresh_is_not_retried_when_jira_may_have_used_the_token(connected_account, mocked_jira, manage, failure):
    """The request reached Jira and its answer was lost (read timeout, dropped connection, HTTP 500/504
    from Jira or a gateway that waited for it, an unreadable answer). Jira may already have rotated the
    token: re-sending the old one would get invalid_grant and could make us declare a live grant dead.
    So: one attempt, tokens and status untouched, reported as failed; the next run finds out."""
    mocked_jira.post(TOKEN_URL, **NOT_RETRIED[failure]())
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer(2)))  # a (wrong) retry's

    run = manage()

    assert run.code == 1
    assert len(token_posts(mocked_jira)) == 1
    assert "Jira - Core Banking: failed — Could not complete the call to Jira" in run.out
    assert_tokens_untouched(connected_account)
    assert connected_account.status == Status.CONNECTED


# --------------------------------------------------------------------------
# On-demand tokens: valid_access_token and jira_request as the account's own connection
# --------------------------------------------------------------------------


@pytest.mark.parametrize("left", [timedelta(seconds=30), timedelta(seconds=-600)], ids=["30 s left", "expired"])
def test_valid_access_token_refreshes_a_token_expiring_within_60_seconds(connected_account, mocked_jira, left):
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() + left)
    connected_account.refresh_from_db()
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    token = services.valid_access_token(account=connected_account, actor="kendis-sync")

    assert token == "ACCESSTOKEN-2-e1d2c3b4"
    assert len(token_posts(mocked_jira)) == 1
    stored = ALMAccount.objects.get(pk=connected_account.pk)
    assert stored.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert stored.token_expires_at > timezone.now() + timedelta(hours=1)
    # A routine refresh for the product: counted on the grant, not in the audit trail.
    assert stored.refresh_count == 1 and stored.last_refreshed_at is not None
    assert events_of(stored) == []


def test_valid_access_token_uses_the_stored_token_when_valid_for_more_than_60_seconds(connected_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() + timedelta(seconds=90))
    connected_account.refresh_from_db()

    assert services.valid_access_token(account=connected_account) == ACCESS_TOKEN
    assert len(mocked_jira.calls) == 0


def test_valid_access_token_uses_a_token_another_caller_just_refreshed(connected_account, mocked_jira):
    """The caller's copy of the account is stale (expiring); the row already holds a fresh pair."""
    ALMAccount.objects.filter(pk=connected_account.pk).update(
        access_token=NEWER_ACCESS, refresh_token=NEWER_REFRESH, token_expires_at=timezone.now() + timedelta(hours=2))
    connected_account.token_expires_at = timezone.now() + timedelta(seconds=10)

    assert services.valid_access_token(account=connected_account) == NEWER_ACCESS
    assert len(mocked_jira.calls) == 0


def test_valid_access_token_explains_a_dead_grant(connected_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now())
    connected_account.refresh_from_db()
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token revoked by the user"))

    with pytest.raises(services.ServiceError, match="Refresh token revoked by the user") as exc:
        services.valid_access_token(account=connected_account)

    assert "Get Auth Token" in str(exc.value)
    assert ALMAccount.objects.get(pk=connected_account.pk).status == Status.NEEDS_REAUTHORIZATION


def test_valid_access_token_never_hands_out_the_kept_tokens_of_a_dead_grant(
    connected_account, mocked_jira, manage, admin_client
):
    """After invalid_grant the tokens are kept (nothing is deleted silently), but the account needs
    re-authorization: callers get the reason, not an expired access token, and Jira is not called."""
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() - timedelta(hours=1))
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token revoked by the user"))
    assert manage().code == 1
    calls = len(mocked_jira.calls)

    with pytest.raises(services.ServiceError, match="Refresh token revoked by the user"):
        services.valid_access_token(account=ALMAccount.objects.get(pk=connected_account.pk))
    page = page_text(admin_client.post(button_url("test_connection", connected_account), follow=True))

    assert "Test connection failed: Jira no longer accepts the refresh token" in page
    assert len(mocked_jira.calls) == calls
    assert ALMAccount.objects.get(pk=connected_account.pk).refresh_token == REFRESH_TOKEN


def test_jira_request_as_the_account_sends_its_bearer_token(connected_account, mocked_jira):
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})

    assert services.jira_request(account=connected_account, method="GET", path="/rest/api/2/myself")["name"] == "jadmin"
    assert mocked_jira.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_jira_request_as_the_account_on_401_refreshes_once_and_retries_once(connected_account, mocked_jira):
    """Jira can revoke or rotate a token before its expiry (e.g. a refresh elsewhere)."""
    mocked_jira.get(MYSELF_URL, status=401, json={"message": "Client must be authenticated"})
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    me = services.jira_request(account=connected_account, method="GET", path="/rest/api/2/myself", actor="kendis-sync")

    assert me["displayName"] == "Jira Admin"
    gets = [c.request for c in mocked_jira.calls if c.request.method == "GET"]
    assert [r.headers["Authorization"] for r in gets] == [f"Bearer {ACCESS_TOKEN}", "Bearer ACCESSTOKEN-2-e1d2c3b4"]
    assert len(token_posts(mocked_jira)) == 1
    stored = ALMAccount.objects.get(pk=connected_account.pk)
    assert stored.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert stored.refresh_count == 1 and events_of(stored) == []  # routine: counted, not in the audit trail


def test_jira_request_as_the_account_retries_only_once(connected_account, mocked_jira):
    mocked_jira.get(MYSELF_URL, status=401, json={"message": "Client must be authenticated"})
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    with pytest.raises(services.JiraRequestError) as second_401:
        services.jira_request(account=connected_account, method="GET", path="/rest/api/2/myself")

    assert second_401.value.status == 401

    assert len([c for c in mocked_jira.calls if c.request.method == "GET"]) == 2
    assert len(token_posts(mocked_jira)) == 1


def test_jira_request_as_the_account_on_401_with_a_dead_grant_says_so(connected_account, mocked_jira):
    mocked_jira.get(MYSELF_URL, status=401, json={"message": "Client must be authenticated"})
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token revoked"))

    with pytest.raises(services.ServiceError, match="Refresh token revoked"):
        services.jira_request(account=connected_account, method="GET", path="/rest/api/2/myself")

    assert ALMAccount.objects.get(pk=connected_account.pk).status == Status.NEEDS_REAUTHORIZATION


# --------------------------------------------------------------------------
# Admin buttons and action
# --------------------------------------------------------------------------

SERVER_INFO = {"version": "9.12.2", "baseUrl": "https://jira.example.com/jira", "deploymentType": "Server",
               "serverTitle": "Core Banking Jira"}


def test_test_connection_button_says_version_url_and_user(admin_client, connected_account, mocked_jira):
    mocked_jira.get(MYSELF_URL, json={"name": "jsmith", "key": "JIRAUSER10100", "displayName": "Jane Smith"})
    mocked_jira.get(SERVER_INFO_URL, json=SERVER_INFO)

    response = admin_client.post(button_url("test_connection", connected_account), follow=True)

    assert response.redirect_chain[0] == (connected_account.get_admin_url(), 302)
    assert "Connected to Jira 9.12.2 at https://jira.example.com/jira as Jane Smith." in page_text(response)
    assert all(c.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for c in mocked_jira.calls)
    connected_account.refresh_from_db()
    assert connected_account.connected_as == "Jane Smith (jsmith)"
    (event,) = events_of(connected_account)
    assert (event.kind, event.outcome, event.actor) == (Kind.TEST_CONNECTION, AuthEvent.Outcome.OK, ADMIN_ACTOR)
    assert event.message == "Connected to Jira 9.12.2 at https://jira.example.com/jira as Jane Smith."


@pytest.mark.parametrize("failure, expected", [
    ({"body": refused()}, "Could not complete the call to Jira: Jira could not be reached (connection refused, or "
                          "the host name does not resolve). Check the Jira base URL"),
    ({"status": 401, "json": {}}, "Jira refused the access token (HTTP 401)."),
    ({"status": 403, "json": {}}, "Could not complete the call to Jira: Jira answered HTTP 403 to "
                                  "GET /rest/api/2/myself."),
])
def test_test_connection_button_says_what_is_wrong(admin_client, connected_account, mocked_jira, failure, expected):
    mocked_jira.get(MYSELF_URL, **failure)
    refresh = mocked_jira.post(TOKEN_URL, json=token_answer(2))  # the 401 case refreshes once
    if failure.get("status") != 401:
        mocked_jira.must_not_be_asked(refresh)  # nothing else is a reason to refresh

    response = admin_client.post(button_url("test_connection", connected_account), follow=True)

    page = page_text(response)
    assert "Test connection failed: " + expected in page
    assert "Connected to Jira 9.12.2" not in page
    event = events_of(connected_account)[0]  # the newest
    assert (event.kind, event.outcome, event.actor) == (Kind.TEST_CONNECTION, AuthEvent.Outcome.FAILED, ADMIN_ACTOR)
    assert expected in event.message


def test_test_connection_of_an_account_that_is_not_connected(admin_client, account, mocked_jira):
    response = admin_client.post(button_url("test_connection", account), follow=True)

    assert "Test connection failed: This account is not connected to Jira yet: click Get Auth Token." in \
        page_text(response)
    assert len(mocked_jira.calls) == 0


def test_refresh_token_now_button_refreshes_even_when_not_due(admin_client, connected_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() + timedelta(hours=2))
    mocked_jira.post(TOKEN_URL, json=token_answer(2))

    response = admin_client.post(button_url("refresh_token", connected_account), follow=True)

    assert response.redirect_chain[0] == (connected_account.get_admin_url(), 302)
    assert "Jira - Core Banking: refreshed — Token refreshed; expires " in page_text(response)
    connected_account.refresh_from_db()
    assert connected_account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    (event,) = events_of(connected_account)
    assert (event.kind, event.outcome, event.actor) == (Kind.REFRESHED, AuthEvent.Outcome.OK, ADMIN_ACTOR)


def test_refresh_token_now_button_shows_jiras_refusal(admin_client, connected_account, mocked_jira):
    mocked_jira.post(TOKEN_URL, **invalid_grant("Refresh token revoked"))

    page = page_text(admin_client.post(button_url("refresh_token", connected_account), follow=True))

    assert "Jira - Core Banking: needs re-authorization — Jira no longer accepts the refresh token" in page
    assert "Refresh token revoked" in page
    assert ALMAccount.objects.get(pk=connected_account.pk).status == Status.NEEDS_REAUTHORIZATION


REVOKE_ANSWERS = {
    "revoked": (lambda: {"status": 200, "body": ""}, True),
    "revoke endpoint 404": (lambda: {"status": 404, "body": "<html>Not Found</html>"}, False),
    "Jira unreachable": (lambda: {"body": refused()}, False),
}


@pytest.mark.parametrize("jira", list(REVOKE_ANSWERS))
def test_disconnect_revokes_best_effort_and_always_wipes_the_tokens(admin_client, connected_account, mocked_jira, jira):
    answer, confirmed = REVOKE_ANSWERS[jira]
    mocked_jira.post(REVOKE_URL, **answer())

    response = admin_client.post(button_url("disconnect", connected_account), follow=True)

    page = page_text(response)
    if confirmed:
        assert "Disconnected: the tokens were deleted here and revoked at Jira." in page
    else:
        assert "Disconnected: the tokens were deleted here; Jira did not confirm the revocation" in page
    revokes = [form_of(c) for c in mocked_jira.calls if c.request.url == REVOKE_URL]
    assert revokes[0] == {"token": REFRESH_TOKEN, "token_type_hint": "refresh_token", "client_id": "client-id-123",
                          "client_secret": CLIENT_SECRET}
    connected_account.refresh_from_db()
    assert connected_account.access_token is None and connected_account.refresh_token is None
    assert connected_account.token_expires_at is None
    assert connected_account.status == Status.NOT_CONNECTED
    assert connected_account.connected_as == ""
    assert not connected_account.is_connected
    # The credentials stay, so Get Auth Token works again without pasting them.
    assert connected_account.client_secret == CLIENT_SECRET
    (event,) = events_of(connected_account)
    assert (event.kind, event.outcome, event.actor) == (Kind.DISCONNECTED, AuthEvent.Outcome.OK, ADMIN_ACTOR)
    assert "Not connected" in page and "No token yet: click Get Auth Token." in page


def test_disconnected_account_is_left_alone_by_refresh_tokens(admin_client, connected_account, mocked_jira, manage):
    mocked_jira.post(REVOKE_URL, status=404)
    admin_client.post(button_url("disconnect", connected_account))
    calls = len(mocked_jira.calls)

    run = manage("--force")

    assert run.code == 0
    assert len(mocked_jira.calls) == calls
    assert "nothing to refresh" in run.out


def test_admin_action_refreshes_the_selected_accounts(admin_client, rotating, db):
    a = AccountFactory(name="Jira A", expires_in=timedelta(hours=2))
    b = AccountFactory(name="Jira B", expires_in=DUE)
    c = AccountFactory(name="Jira C", expires_in=DUE)  # not selected
    new = AccountFactory(name="Jira D", connected=False)

    response = admin_client.post(
        reverse("admin:alm_accounts_almaccount_changelist"),
        {"action": "refresh_selected", "_selected_action": [a.pk, b.pk, new.pk]},
        follow=True,
    )

    page = page_text(response)
    assert sorted(rotating.used) == sorted([a.refresh_token, b.refresh_token])
    assert "Jira A: refreshed — Token refreshed" in page
    assert "Jira B: refreshed — Token refreshed" in page
    assert "Jira D: not connected" in page
    assert "Jira C:" not in page
    assert_tokens_untouched(c)
    assert [e.actor for e in AuthEvent.objects.filter(kind=Kind.REFRESHED)] == [ADMIN_ACTOR] * 2


BUTTONS = ["test_connection", "refresh_token", "disconnect"]


def test_view_only_staff_sees_no_buttons_and_cannot_post_them(client, connected_account, mocked_jira):
    client.force_login(staff_user("viewer", "view_almaccount"))

    page = client.get(connected_account.get_admin_url())
    assert page.status_code == 200
    text = page_text(page)
    assert "Jira - Core Banking" in text
    for name in BUTTONS:
        assert button_url(name, connected_account) not in text
    assert "Test connection" not in text and "Refresh token now" not in text and "Disconnect" not in text
    assert 'name="_get_auth_token"' not in text

    for name in BUTTONS:
        assert client.post(button_url(name, connected_account)).status_code == 403
    changelist = reverse("admin:alm_accounts_almaccount_changelist")
    assert 'value="refresh_selected"' not in client.get(changelist).content.decode()  # the action is not offered
    client.post(changelist, {"action": "refresh_selected", "_selected_action": [connected_account.pk]})
    assert len(mocked_jira.calls) == 0
    assert not AuthEvent.objects.exists()
    assert_tokens_untouched(connected_account)


def test_admin_sees_the_buttons(admin_client, connected_account):
    text = page_text(admin_client.get(connected_account.get_admin_url()))
    for name in BUTTONS:
        assert f'action="{button_url(name, connected_account)}"' in text
    assert "Refresh token now" in text
    changelist = admin_client.get(reverse("admin:alm_accounts_almaccount_changelist")).content.decode()
    assert 'value="refresh_selected"' in changelist


@pytest.mark.parametrize("name", BUTTONS)
def test_buttons_refuse_get(admin_client, connected_account, mocked_jira, name):
    assert admin_client.get(button_url(name, connected_account)).status_code == 405
    assert len(mocked_jira.calls) == 0
    assert_tokens_untouched(connected_account)


@pytest.mark.parametrize("name", BUTTONS)
def test_buttons_of_an_unknown_account_are_404(admin_client, mocked_jira, name, db):
    assert admin_client.post(reverse(f"admin:alm_accounts_almaccount_{name}", args=[999999])).status_code == 404


# --------------------------------------------------------------------------
# Audit trail
# --------------------------------------------------------------------------


def test_audit_trail_records_every_step_without_secrets_newest_first(
    admin_client, connected_account, mocked_jira, manage
):
    ok, failed = AuthEvent.Outcome.OK, AuthEvent.Outcome.FAILED
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    assert manage().code == 0  # 1. refreshed by the command: routine, counted on the account only
    connected_account.refresh_from_db()
    assert (connected_account.refresh_count, events_of(connected_account)) == (1, [])
    mocked_jira.replace(responses.POST, TOKEN_URL, body="<html>Bad Gateway</html>", status=502)
    admin_client.post(button_url("refresh_token", connected_account))  # 2. refresh failed
    mocked_jira.replace(responses.POST, TOKEN_URL, json=token_answer(3))
    assert manage("--force").code == 0  # 3. refreshed by the command after the failure: a recovery
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    mocked_jira.get(SERVER_INFO_URL, json=SERVER_INFO)
    admin_client.post(button_url("test_connection", connected_account))  # 4. test connection ok
    mocked_jira.replace(responses.GET, MYSELF_URL, body=refused())
    admin_client.post(button_url("test_connection", connected_account))  # 5. test connection failed
    mocked_jira.post(REVOKE_URL, status=404)
    admin_client.post(button_url("disconnect", connected_account))  # 6. disconnected

    events = events_of(connected_account)
    assert [(e.kind, e.outcome, e.actor) for e in events] == [
        (Kind.DISCONNECTED, ok, ADMIN_ACTOR),
        (Kind.TEST_CONNECTION, failed, ADMIN_ACTOR),
        (Kind.TEST_CONNECTION, ok, ADMIN_ACTOR),
        (Kind.REFRESHED, ok, COMMAND_ACTOR),
        (Kind.REFRESH_FAILED, failed, ADMIN_ACTOR),
    ]
    assert all(e.message for e in events)
    for event in events:
        assert not SECRET_PATTERN.search(event.message), event.message

    page = page_text(admin_client.get(connected_account.get_admin_url()))
    assert not SECRET_PATTERN.search(page)
    trail = page[page.find('class="alm-audit-trail"'):]
    positions = [trail.find(e.message) for e in events]
    assert -1 not in positions, [e.message for e, p in zip(events, positions, strict=True) if p == -1]
    assert positions == sorted(positions), "the account page must list the newest event first"
    for label in ("Disconnected", "Test connection", "Token refresh failed", "Token refreshed", COMMAND_ACTOR,
                  ADMIN_ACTOR, "Failed", "OK"):
        assert label in trail


def test_audit_trail_is_read_only(admin_client, connected_account):
    event = services.record_event(connected_account, actor="someone", kind=Kind.REFRESHED, ok=True, message="x")
    change = reverse("admin:alm_accounts_authevent_change", args=[event.pk])

    # Every field of the event, valid: were the trail editable, this POST would rewrite it (not just re-render
    # the form with "This field is required").
    rewrite = {"account": connected_account.pk, "account_name": "Forged", "created_at_0": "2020-01-01",
               "created_at_1": "00:00:00", "actor": "nobody", "kind": Kind.CONNECTED, "outcome": "ok",
               "message": "rewritten", "_save": "Save"}
    assert admin_client.post(change, rewrite).status_code == 403
    assert admin_client.post(reverse("admin:alm_accounts_authevent_delete", args=[event.pk]),
                             {"post": "yes"}).status_code == 403
    assert admin_client.get(reverse("admin:alm_accounts_authevent_add")).status_code == 403
    event.refresh_from_db()
    assert (event.message, event.actor, event.kind) == ("x", "someone", Kind.REFRESHED)


def test_all_activity_of_an_account_lists_only_its_events_without_listing_every_account(admin_client, account):
    other = ALMAccount.objects.create(name="Jira - Other", base_url="https://other.example.com")
    services.record_event(account, actor="someone", kind=AuthEvent.Kind.TEST_CONNECTION, ok=True,
                          message="Event of the core banking account")
    services.record_event(other, actor="someone", kind=AuthEvent.Kind.TEST_CONNECTION, ok=True,
                          message="Event of the other account")
    account_page = admin_client.get(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]))
    link = re.search(r'href="([^"]+)">All activity of this account', account_page.content.decode()).group(1)

    page = admin_client.get(html.unescape(link))

    assert page.status_code == 200
    text = page.content.decode()
    assert "Event of the core banking account" in text
    assert "Event of the other account" not in text
    assert "Jira - Other" not in text  # no sidebar filter listing every account (thousands in production)


def test_disconnect_does_not_claim_a_revocation_jira_confirmed_only_in_part(admin_client, connected_account,
                                                                          mocked_jira):
    mocked_jira.post(REVOKE_URL, status=200)  # the refresh token's revocation
    mocked_jira.post(REVOKE_URL, status=503)  # the access token's

    response = admin_client.post(button_url("disconnect", connected_account), follow=True)

    assert "Jira did not confirm the revocation" in page_text(response)
    connected_account.refresh_from_db()
    assert connected_account.refresh_token is None and connected_account.access_token is None
