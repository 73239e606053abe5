"""The refresh path's statements, built once (services.statements), and the refresher's session settings.

The shortcuts must give exactly what the ORM gave: the locked grant with its
account and person read along (secrets decrypted), the token UPDATE with its
timestamps, the audit event with its id. And refresh_tokens' own connections
carry the settings that protect a refresh for the whole session, so that no
refresh needs its own `set_config`, while any other connection still gets them
per transaction.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, AuthEvent
from alm_accounts.services import GrantRef, RefreshOutcome, statements
from alm_accounts.services.common import protect_session, record_event
from tests.conftest import assert_holds_jiras_current_pair, in_thread
from tests.factories import connect_account, connect_person

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30  # only reached when something is broken


def statements_of(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(("BEGIN", "COMMIT"))]


def test_a_locked_credential_comes_with_its_account_and_person_and_readable_secrets(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    credentials = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
                   for name in ("alice", "bob")]
    for credential in credentials:  # the second one runs the statement built for the first
        with transaction.atomic(), CaptureQueriesContext(connection) as captured:
            locked = GrantRef("user", credential.pk).locked(skip_locked=True)
            seen = (locked.refresh_token, locked.access_token, locked.account.name, locked.account.client_secret,
                    locked.user.username, locked.user.is_active)
        assert len(captured.captured_queries) == 1, "account and person are read with the credential"
        assert seen == (credential.refresh_token, credential.access_token, "Core", account.client_secret,
                        credential.user.username, True)
        assert locked.pk == credential.pk and not locked._state.adding


def test_a_grant_that_is_gone_is_none_and_a_lock_needs_a_transaction(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    with transaction.atomic():
        assert GrantRef("account", account.pk + 1000).locked() is None
        assert GrantRef("account", account.pk).locked().refresh_token == account.refresh_token
    if connection.features.has_select_for_update:  # as the ORM: SQLite has no row locks to refuse
        with pytest.raises(transaction.TransactionManagementError):
            GrantRef("account", account.pk).locked()


def test_a_refresh_stores_the_new_pair_its_times_and_one_audit_event(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    credential = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))
    before = timezone.now()
    for grant in (account, credential):
        result = services.refresh_grant(grant=GrantRef.of(grant), actor="test")
        assert result.outcome is RefreshOutcome.REFRESHED, result
        assert_holds_jiras_current_pair(grant, fake_jira)
        assert grant.updated_at >= before and grant.last_refreshed_at >= before
        assert grant.token_expires_at > timezone.now() + timedelta(minutes=30)
    events = AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESHED).order_by("pk")
    assert [(e.account_id, e.credential_id, e.grant_owner, e.account_name, e.actor) for e in events] == [
        (account.pk, None, "", "Core", "test"), (account.pk, credential.pk, "alice", "Core", "test")]


def test_an_audit_event_has_its_id_and_can_be_saved_again(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    event = record_event(account, actor="test", kind=AuthEvent.Kind.REFRESHED, ok=True, message="one")
    assert event.pk == AuthEvent.objects.get(message="one").pk and event.created_at is not None
    event.message = "two"
    event.save()
    assert AuthEvent.objects.get(pk=event.pk).message == "two"


def test_storing_tokens_on_a_grant_deleted_meanwhile_fails_as_save_would(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    ALMAccount.objects.filter(pk=account.pk).delete()
    with pytest.raises(DatabaseError):
        statements.update_fields(account, ["token_scope", "updated_at"])


# --------------------------------------------------------------------------
# refresh_tokens' own connections: the protection once per session
# --------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_a_refresher_connection_is_protected_for_its_whole_session_and_a_new_one_per_transaction(fake_jira, caplog):
    """A DBA's idle-in-transaction policy shorter than Jira's answer: on a connection protected once per session a
    refresh needs no set_config of its own and still survives the policy; a new connection (the old one was lost)
    is protected per transaction again until it is protected for its session."""
    database = connection.settings_dict["NAME"]
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    fake_jira.latency = 1.0

    def refresh_and_count():
        with CaptureQueriesContext(connection) as captured:
            result = services.refresh_account(account_id=account.pk, actor="refresher")
        return result, [sql for sql in statements_of(captured) if "set_config" in sql]

    def refresher():
        protect_session()
        protected = refresh_and_count()
        connection.close()  # as after a lost connection (write_again): the next one is new
        new_connection = refresh_and_count()
        protect_session()
        protected_again = refresh_and_count()
        return protected, new_connection, protected_again

    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{database}" SET idle_in_transaction_session_timeout = 300')
    try:
        caplog.set_level(logging.DEBUG)
        thread, outcome = in_thread(refresher)  # a new connection: the policy applies to it
        thread.join(WAIT_SECONDS)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" RESET idle_in_transaction_session_timeout')

    assert "error" not in outcome, repr(outcome.get("error"))
    (first, first_set), (second, second_set), (third, third_set) = outcome["result"]
    assert [r.outcome for r in (first, second, third)] == [RefreshOutcome.REFRESHED] * 3
    assert not any("first write failed" in r.message for r in (first, second, third))
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert first_set == [] and third_set == [], "a protected session needs no set_config per refresh"
    assert len(second_set) == 1, "a new connection is protected per transaction"
    assert_holds_jiras_current_pair(account, fake_jira)


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_refresh_tokens_threads_protect_their_sessions(fake_jira, run_command):
    """The threads of refresh_tokens --concurrency N protect their connections once, not per refresh."""
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    for name in ("alice", "bob", "carol", "dave"):
        connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
    sent, lock = [], threading.Lock()

    def watch(execute, sql, params, many, context):
        if "set_config" in sql and threading.current_thread() is not threading.main_thread():
            with lock:
                sent.append(params)
        return execute(sql, params, many, context)

    def on_created(sender, connection, **kwargs):
        connection.execute_wrappers.append(watch)

    connection_created.connect(on_created)
    try:
        run = run_command("--force", "--concurrency", "2")
    finally:
        connection_created.disconnect(on_created)
    assert run.code == 0, run.err
    assert "5 refreshed" in run.summary
    assert 1 <= len(sent) <= 2, "once per thread's connection, for the session (is_local false)"
    assert all(params[0] is False for params in sent)
