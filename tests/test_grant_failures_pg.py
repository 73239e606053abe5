"""No grant lost when our own database fails in the middle of a refresh (issue 10), on real PostgreSQL.

Jira rotates both tokens on every refresh: once it has answered, the pair in
memory is the only live copy of the grant. These tests kill the refresher's
database connection while Jira is answering, and put a database policy in
place that would end an idle transaction, and check that the account is
still alive afterwards.

PostgreSQL only (pg_terminate_backend, session policies). Without it these
tests skip locally; with CI=true they fail.
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, AuthEvent
from alm_accounts.services import RefreshOutcome
from tests.conftest import in_thread

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

CLIENT_ID, CLIENT_SECRET = "pg-client", "CLIENTSECRET-pgfail-5e6f"
WAIT_SECONDS = 30  # only reached when something is broken


def connected_account(fake, key: str = "a1") -> ALMAccount:
    account = ALMAccount.objects.create(
        name=f"Jira {key}", base_url=fake.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        client_secret_base_url=fake.base_url, status=ALMAccount.Status.CONNECTED, token_scope="ADMIN",
        token_expires_at=timezone.now(), connected_at=timezone.now(),
    )
    account.access_token, account.refresh_token = fake.add_grant(
        key, redirect_uri=account.callback_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    account.save()
    return account


def refresh_in_thread(account_id: int):
    return in_thread(lambda: services.refresh_account(account_id=account_id, actor="refresher"))


def backends_locking_accounts() -> list[int]:
    """The database backends (other than ours) that hold a row lock on ALM accounts: refreshes in flight."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND l.mode = 'RowShareLock' AND l.pid <> pg_backend_pid()",
            [ALMAccount._meta.db_table],
        )
        return [row[0] for row in cursor.fetchall()]


def assert_alive_with_jiras_current_pair(fake, account: ALMAccount, key: str):
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token) == fake.current_tokens(key)
    assert account.status == ALMAccount.Status.CONNECTED
    assert fake.refreshes[key] == 1 and fake.rejected == []
    # ... and it keeps working: the next refresh is accepted by Jira.
    assert services.refresh_account(account_id=account.pk, actor="test").outcome is RefreshOutcome.REFRESHED
    assert fake.rejected == []


def test_a_killed_database_connection_after_jira_rotated_does_not_cost_the_grant(fake_jira, caplog):
    """The refresher's backend is terminated while Jira is (slowly) rotating: the new pair is written again."""
    fake_jira.latency = 1.0
    account = connected_account(fake_jira)
    caplog.set_level(logging.DEBUG)

    thread, outcome = refresh_in_thread(account.pk)
    assert fake_jira.token_requests_started.acquire(timeout=WAIT_SECONDS), "the refresh never reached Jira"
    victims = backends_locking_accounts()
    assert len(victims) == 1, victims
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [victims[0]])
    thread.join(WAIT_SECONDS)

    assert "error" not in outcome, repr(outcome.get("error"))
    result = outcome["result"]
    assert result.outcome is RefreshOutcome.REFRESHED, result
    assert "first write failed" in result.message
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and all(str(account.pk) in r.getMessage() for r in critical)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for token in (*fake_jira.current_tokens("a1"), "AT-a1-0", "RT-a1-0", CLIENT_SECRET):
        assert token not in logged
    event = AuthEvent.objects.filter(account=account, kind=AuthEvent.Kind.REFRESHED).get()
    assert "first write failed" in event.message
    assert_alive_with_jiras_current_pair(fake_jira, account, "a1")


def test_a_database_policy_on_idle_transactions_cannot_end_a_refresh_midway(fake_jira, caplog):
    """idle_in_transaction_session_timeout (a common DBA policy) shorter than Jira's answer.

    The refresh holds its transaction open while Jira answers; the policy would end the session and the
    rotated pair with it. The refresh switches the policy off for its own transaction only.
    """
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{database}" SET idle_in_transaction_session_timeout = 300')
    try:
        fake_jira.latency = 1.0
        account = connected_account(fake_jira)
        caplog.set_level(logging.DEBUG)
        thread, outcome = refresh_in_thread(account.pk)  # a new connection: the policy applies to it
        thread.join(WAIT_SECONDS)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" RESET idle_in_transaction_session_timeout')

    assert "error" not in outcome, repr(outcome.get("error"))
    assert outcome["result"].outcome is RefreshOutcome.REFRESHED
    # Stored at the first attempt: nothing had to be rescued.
    assert "first write failed" not in outcome["result"].message
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert_alive_with_jiras_current_pair(fake_jira, account, "a1")
