"""What one refresh costs the database, what it leaves behind, and the refresher's session settings.

A routine refresh in refresh_tokens is two statements, for both kinds of grant
and both providers: the grant's own row read under its lock (a person's
credential reads only the few columns of their account and person that change
while the refresher runs; the rows themselves are read once per batch), and the
UPDATE that stores Jira's new pair and counts the refresh. Its entry of the
health timeline (issue 21: the grant's day of refreshes) travels with its result
and the run writes a hundred of them in one round trip. Any other caller (an
admin's Refresh token now, a 401's retry) writes its entry itself, once the
refresh has committed: three statements. No audit event: the audit trail keeps
what a person looks for there (connections, failures, recoveries, disconnects,
admin actions); a routine success is counted on the grant (refresh_count,
last_refreshed_at) and logged. refresh_tokens' own connections carry the
settings that protect a refresh for the whole session, so that no refresh needs
its own `set_config`, while any other connection still gets them per
transaction (one statement more).
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style
from django.db import connection, transaction
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent, RefreshDay
from alm_accounts.refresher.report import Report
from alm_accounts.services import GrantRef, RefreshOutcome
from alm_accounts.services.common import protect_session, record_event
from tests.conftest import assert_holds_jiras_current_pair, in_thread
from tests.factories import connect_account, connect_person

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30  # only reached when something is broken
CLOUD_CLIENT_ID, CLOUD_CLIENT_SECRET = "statements-cloud-app", "CLOUDSECRET-statements-5e6f"
# What a routine refresh costs in refresh_tokens, BEGIN and COMMIT apart: the locked SELECT of the grant and its
# UPDATE. Before issue 20 it was 3 (with the audit event's INSERT), 4 on a connection not protected for its
# session; issue 21 added the upsert of the grant's day of refreshes, which the run now writes for a hundred grants.
STATEMENTS_PER_REFRESH = 2


def statements_of(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(("BEGIN", "COMMIT"))]


def connect_cloud(fake_jira, settings, name: str = "Cloud") -> tuple[ALMAccount, ALMCredential]:
    """A Jira Cloud account (the deployment's app, at the fake's Cloud token endpoint) connected, and alice's
    credential on it; both expire in 5 minutes."""
    settings.ATLASSIAN_AUTH_URL = fake_jira.auth_url
    settings.ATLASSIAN_API_URL = fake_jira.auth_url.replace("127.0.0.1", "localhost")
    settings.ATLASSIAN_CLIENT_ID, settings.ATLASSIAN_CLIENT_SECRET = CLOUD_CLIENT_ID, CLOUD_CLIENT_SECRET
    now = timezone.now()
    account = ALMAccount(name=name, authentication=ALMAccount.Authentication.JIRA_CLOUD_OAUTH2,
                         base_url="https://statements.atlassian.net", cloud_id="00000000-0000-4000-8000-000000000001",
                         cloud_site_name="statements", token_expires_at=now + timedelta(minutes=5),
                         token_scope="read:jira-work offline_access", status=ALMAccount.Status.CONNECTED,
                         connected_at=now - timedelta(days=1), connected_as_name="cloud-admin")
    account.access_token, account.refresh_token = fake_jira.add_grant(
        name, redirect_uri="", client_id=CLOUD_CLIENT_ID, client_secret=CLOUD_CLIENT_SECRET, cloud=True)
    account.save()
    user = User.objects.create_user("alice", password="pw-person-123", is_staff=True)
    credential = ALMCredential(account=account, user=user, token_expires_at=now + timedelta(minutes=5),
                               token_scope="read:jira-work offline_access", status=ALMAccount.Status.CONNECTED,
                               connected_at=now - timedelta(days=1), connected_as_name="alice-cloud-id")
    credential.access_token, credential.refresh_token = fake_jira.add_grant(
        f"{name}/alice", redirect_uri="", client_id=CLOUD_CLIENT_ID, client_secret=CLOUD_CLIENT_SECRET, cloud=True)
    credential.save()
    return account, credential


@pytest.fixture(params=["data center", "cloud"])
def grants(request, fake_jira, settings) -> tuple[ALMAccount, ALMCredential]:
    """An account's own connection and a person's credential on it, on Jira Data Center or Jira Cloud, both due."""
    if request.param == "cloud":
        return connect_cloud(fake_jira, settings)
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    return account, connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))


def table_of(grant) -> str:
    model = grant if isinstance(grant, type) else type(grant)
    return connection.ops.quote_name(model._meta.db_table)


# --------------------------------------------------------------------------
# Statements per refresh
# --------------------------------------------------------------------------


def test_a_routine_refresh_is_two_statements_for_both_kinds_and_both_providers(grants):
    """Measured the way the benchmark measures (services.refresh_grant, statements apart from BEGIN/COMMIT), on a
    connection protected for its session as refresh_tokens' are, and as refresh_tokens asks (the run writes the
    timeline): the locked SELECT of the grant's own row and one UPDATE, for an account's connection and a person's
    credential alike; no INSERT into the audit trail, the timeline's entry on the result."""
    protect_session()  # as refresh_tokens' threads do (nothing on SQLite)
    for grant in grants:
        with CaptureQueriesContext(connection) as captured:
            result = services.refresh_grant(grant=GrantRef.of(grant), actor="refresh_tokens",
                                            due_within=timedelta(minutes=10), skip_locked=True,
                                            timeline_kept_by_caller=True)
        assert result.outcome is RefreshOutcome.REFRESHED, result
        sent = statements_of(captured)
        assert len(sent) == STATEMENTS_PER_REFRESH, sent
        select, update = sent
        assert select.startswith("SELECT") and update.startswith(f"UPDATE {table_of(grant)}"), sent
        if connection.vendor == "postgresql":  # only the grant's own row is locked, not its account or person
            assert select.endswith(f"FOR NO KEY UPDATE OF {table_of(grant)} SKIP LOCKED"), select
        assert (result.timeline.grant_kind, result.timeline.grant_id, result.timeline.successes) == (
            grant.grant_kind, grant.pk, 1)
    assert not AuthEvent.objects.exists()
    assert not RefreshDay.objects.exists(), "the caller writes the timeline"


def test_any_other_caller_writes_its_timeline_entry_once_the_refresh_has_committed(grants):
    """Any other caller (the admin, a 401's retry) gets the protection per transaction (one set_config on
    PostgreSQL) and writes the refresh's day of refreshes itself, after the COMMIT: still no more than the four
    statements a refresh cost before."""
    account, _ = grants
    with CaptureQueriesContext(connection) as captured:
        result = services.refresh_grant(grant=GrantRef.of(account), actor="test")
    assert result.outcome is RefreshOutcome.REFRESHED, result
    extra = 1 if connection.vendor == "postgresql" else 0
    sent = statements_of(captured)
    assert len(sent) == STATEMENTS_PER_REFRESH + 1 + extra, sent
    everything = [q["sql"] for q in captured.captured_queries]
    day = everything[-1]
    assert day.startswith(f"INSERT INTO {table_of(RefreshDay)}") and "ON CONFLICT" in day, everything
    if connection.vendor == "postgresql":
        assert everything[-2].upper().startswith("COMMIT"), everything
    assert RefreshDay.objects.get(grant_kind="account", grant_id=account.pk).successes == 1


def test_the_refresher_writes_its_runs_timeline_a_hundred_grants_at_a_time(fake_jira, run_command):
    """Five grants refreshed by refresh_tokens: one write (an executemany: one round trip on PostgreSQL) adds
    all five grants' days of refreshes, each counting its refresh."""
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    people = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
              for name in ("alice", "bob", "carol", "dave")]

    sent = refresher_statements(run_command)

    days = [sql for sql in sent if f"INSERT INTO {table_of(RefreshDay)}" in sql]
    assert len(days) == 1 and days[0].startswith("5 times: "), days
    rows = {(row.grant_kind, row.grant_id): row for row in RefreshDay.objects.all()}
    assert set(rows) == {("account", account.pk), *(("user", person.pk) for person in people)}
    assert all(row.successes == 1 and row.failures == 0 for row in rows.values())


def test_a_timeline_the_database_refuses_never_costs_the_refresh(grants, fake_jira, monkeypatch, caplog):
    """The day of refreshes cannot be written (a full disk, a lost connection after the COMMIT): Jira's new pair is
    stored and the refresh is a success; the loss is logged, by class only."""
    from django.db import OperationalError

    from alm_accounts.services import history

    def refuse(*args, **kwargs):
        raise OperationalError("could not extend file: No space left on device")

    account, _ = grants
    monkeypatch.setattr(history, "write", refuse)
    caplog.set_level(logging.WARNING)
    result = services.refresh_grant(grant=GrantRef.of(account), actor="test")

    assert result.outcome is RefreshOutcome.REFRESHED, result
    assert_holds_jiras_current_pair(account, fake_jira)
    account.refresh_from_db()
    assert account.refresh_count == 1
    warned = [r.getMessage() for r in caplog.records if "health timeline" in r.getMessage()]
    assert warned == ["The health timeline of 1 refresh(es) could not be written (OperationalError)."], warned
    assert "No space left" not in caplog.text


# --------------------------------------------------------------------------
# What a refresh leaves: the count, the log line, the audit trail when a person needs it
# --------------------------------------------------------------------------


def test_a_routine_refresh_is_counted_on_the_grant_and_logged_not_audited(grants, fake_jira, caplog):
    caplog.set_level(logging.INFO, logger="alm_accounts.services")
    before = timezone.now()
    for grant in grants:
        for _ in range(2):
            result = services.refresh_grant(grant=GrantRef.of(grant), actor="refresh_tokens")
            assert result.outcome is RefreshOutcome.REFRESHED, result
        assert_holds_jiras_current_pair(grant, fake_jira)
        assert grant.refresh_count == 2
        assert grant.updated_at >= before and grant.last_refreshed_at >= before
        assert grant.token_expires_at > timezone.now() + timedelta(minutes=30)
    assert not AuthEvent.objects.exists(), "routine refreshes stay out of the audit trail"
    lines = [r for r in caplog.records if r.getMessage().startswith("Token refresh of ")]
    assert [(r.levelname, r.grant_kind, r.outcome, r.refresh_count) for r in lines] == [
        ("INFO", "account", "refreshed", 1), ("INFO", "account", "refreshed", 2),
        ("INFO", "user", "refreshed", 1), ("INFO", "user", "refreshed", 2)]
    account, credential = grants
    for grant in grants:
        grant.refresh_from_db()
        assert grant.access_token not in caplog.text and grant.refresh_token not in caplog.text
    assert "Token refreshed; expires " in lines[0].getMessage()


def test_a_refresh_after_a_failure_is_a_recovery_in_the_audit_trail(grants, fake_jira):
    """The failure and the success that ends it are in the trail; the routine refresh after them is counted only."""
    account, credential = grants
    for grant in grants:
        fake_jira.token_outage()
        failed = services.refresh_grant(grant=GrantRef.of(grant), actor="refresh_tokens")
        fake_jira.outage = None
        assert failed.outcome is RefreshOutcome.FAILED, failed
        for _ in range(2):  # the recovery, then a routine refresh
            result = services.refresh_grant(grant=GrantRef.of(grant), actor="refresh_tokens")
            assert result.outcome is RefreshOutcome.REFRESHED, result
        assert_holds_jiras_current_pair(grant, fake_jira)
        assert grant.refresh_count == 2
    kinds = list(AuthEvent.objects.order_by("pk").values_list("credential_id", "kind", "outcome"))
    assert kinds == [(None, "refresh_failed", "failed"), (None, "refreshed", "ok"),
                     (credential.pk, "refresh_failed", "failed"), (credential.pk, "refreshed", "ok")]


def test_an_admins_refresh_is_an_admin_action_in_the_audit_trail(grants):
    account, _ = grants
    result = services.refresh_account(account_id=account.pk, actor="admin", admin_action=True)
    assert result.outcome is RefreshOutcome.REFRESHED, result
    event = AuthEvent.objects.get()
    assert (event.account_id, event.credential_id, event.kind, event.outcome, event.actor) == (
        account.pk, None, "refreshed", "ok", "admin")
    assert event.message == result.message
    account.refresh_from_db()
    assert account.refresh_count == 1


def test_a_new_connection_and_a_disconnect_start_the_count_again(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    services.refresh_grant(grant=GrantRef.of(account), actor="refresh_tokens")
    account.refresh_from_db()
    assert account.refresh_count == 1
    services.disconnect(account=account, actor="admin")
    account.refresh_from_db()
    assert (account.refresh_count, account.last_refreshed_at) == (0, None)


# --------------------------------------------------------------------------
# The locked read and the audit event, through the ORM
# --------------------------------------------------------------------------


def test_a_locked_credential_comes_with_its_account_and_person_and_readable_secrets(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    credentials = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
                   for name in ("alice", "bob")]
    for credential in credentials:
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


def test_an_audit_event_has_its_id_and_can_be_saved_again(fake_jira):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    event = record_event(account, actor="test", kind=AuthEvent.Kind.DISCONNECTED, ok=True, message="one")
    assert event.pk == AuthEvent.objects.get(message="one").pk and event.created_at is not None
    event.message = "two"
    event.save()
    assert AuthEvent.objects.get(pk=event.pk).message == "two"


def test_the_upgrade_counts_the_refreshes_the_audit_trail_already_holds(fake_jira):
    """Migration 0008: each grant's count starts from its "Token refreshed" events since it was connected (the
    events stay); older ones, failures and other grants' are not counted."""
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    credential = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))
    other = connect_account(fake_jira, "Other", expires_in=timedelta(minutes=5))
    for grant, n in ((account, 3), (credential, 2)):
        for _ in range(n):
            record_event(grant, actor="refresh_tokens", kind=AuthEvent.Kind.REFRESHED, ok=True, message="old")
    record_event(account, actor="refresh_tokens", kind=AuthEvent.Kind.REFRESH_FAILED, ok=False, message="x")
    before_connection = record_event(account, actor="refresh_tokens", kind=AuthEvent.Kind.REFRESHED, ok=True)
    AuthEvent.objects.filter(pk=before_connection.pk).update(created_at=account.connected_at - timedelta(hours=1))

    call_command("migrate", "alm_accounts", "0007_client_refused_and_alert_order", verbosity=0)
    call_command("migrate", "alm_accounts", verbosity=0)

    counts = {grant: type(grant).objects.get(pk=grant.pk).refresh_count for grant in (account, credential, other)}
    assert counts == {account: 3, credential: 2, other: 0}
    assert AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESHED).count() == 6


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


# --------------------------------------------------------------------------
# The screens: the count and the last refresh where the trail no longer has them
# --------------------------------------------------------------------------


def test_the_account_and_credential_pages_show_the_refreshes_the_audit_trail_no_longer_lists(
        fake_jira, admin_client):
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    credential = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))
    for grant, times in ((account, 2), (credential, 1)):
        for _ in range(times):
            assert services.refresh_grant(grant=GrantRef.of(grant), actor="refresh_tokens").outcome is \
                RefreshOutcome.REFRESHED

    page = admin_client.get(account.get_admin_url()).content.decode()
    assert field_shown(page, "refresh_count") == "2"
    assert field_shown(page, "last_refreshed_at") not in ("", "-", "—")
    assert "Nothing recorded yet. Routine token refreshes are not listed here" in page
    assert "Token refreshed" not in page
    page = admin_client.get(f"/admin/alm_accounts/almcredential/{credential.pk}/change/").content.decode()
    assert field_shown(page, "refresh_count") == "1"
    assert field_shown(page, "last_refreshed_at") not in ("", "-", "—")


def field_shown(page: str, field: str) -> str:
    """The value a read-only field shows on an admin change page."""
    start = page.index(f"field-{field}")
    start = page.index('<div class="readonly">', start) + len('<div class="readonly">')
    return page[start:page.index("</div>", start)].strip()


# --------------------------------------------------------------------------
# The refresher reads a batch's accounts and people once (selection.ReadAlongBatches)
# --------------------------------------------------------------------------


def refresher_statements(run_command, *argv) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        run = run_command("--force", "--concurrency", "1", *argv)
    assert run.code == 0, run.out + run.err
    return statements_of(captured)


def test_the_refresher_locks_a_persons_credential_without_reading_their_account_and_person_again(
        fake_jira, run_command):
    """Three people on one account: their account and persons are read once for the batch, and each locked read
    takes the credential's own row and only the columns that can change under a running refresher."""
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    people = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
              for name in ("alice", "bob", "carol")]

    sent = refresher_statements(run_command)

    credential_table = table_of(people[0])
    locked = [sql for sql in sent if sql.startswith("SELECT") and f"WHERE {credential_table}.\"id\" = " in sql]
    assert len(locked) == 3, sent
    for sql in locked:
        columns = sql.split(" FROM ")[0]
        assert "client_secret" not in columns and "base_url" not in columns and "password" not in columns, sql
        assert "client_refused_at" in columns and "is_active" in columns, sql
    batch_reads = [sql for sql in sent if sql.startswith("SELECT") and any(
        f"FROM {table} WHERE {table}.\"id\" IN (" in sql
        for table in (credential_table, table_of(account), table_of(people[0].user)))]
    assert len(batch_reads) == 3, "the credentials' links, their accounts, their persons: once for the batch"
    for person in people:
        person.refresh_from_db()
        assert person.refresh_count == 1
        assert_holds_jiras_current_pair(person, fake_jira)


def test_a_person_made_inactive_after_the_batch_was_read_is_not_refreshed(fake_jira, run_command, monkeypatch):
    """The batch's person rows say active; the person is made inactive (bypassing the signals, as a bulk update
    does) before their refresh: the locked read sees it, and the credential is not refreshed."""
    from alm_accounts.refresher import selection

    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    alice = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))
    read_batch = selection.ReadAlongBatches._read

    def read_then_deactivate(batch):
        rows = read_batch(batch)
        User.objects.filter(pk=alice.user_id).update(is_active=False)
        return rows

    monkeypatch.setattr(selection.ReadAlongBatches, "_read", staticmethod(read_then_deactivate))
    run = run_command("--force", "--concurrency", "1")

    assert "Core (alice): not connected" in run.out and "the person is inactive" in run.out, run.out
    alice.refresh_from_db()
    assert alice.refresh_count == 0 and fake_jira.refreshes["Core/alice"] == 0
    assert fake_jira.refreshes["Core"] == 1, "the account's own connection is refreshed as usual"


def test_a_grant_handed_out_batches_after_its_own_was_read_still_gets_its_rows(fake_jira, run_command, monkeypatch):
    """The pacer reads a few hundred grants ahead of the refreshes: with a batch per grant, every batch is read
    before the first refresh starts, and each person's locked read still takes only the credential's own row."""
    from alm_accounts.refresher import selection

    monkeypatch.setattr(selection, "READ_ALONG_BATCH_LIMITS", (1, 1))
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    people = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5))
              for name in ("alice", "bob", "carol", "dave")]

    sent = refresher_statements(run_command)

    credential_table = table_of(people[0])
    locked = [sql for sql in sent if sql.startswith("SELECT") and f"WHERE {credential_table}.\"id\" = " in sql]
    assert len(locked) == 4, sent
    assert not [sql for sql in locked if "client_secret" in sql.split(" FROM ")[0]], \
        "no person's locked read reads their account's row again"
    for person in people:
        person.refresh_from_db()
        assert person.refresh_count == 1


def test_rows_read_too_long_before_their_grant_starts_are_read_again_under_its_lock(
        fake_jira, run_command, monkeypatch):
    """A grant held back longer than READ_ALONG_MAX_AGE (its Jira at its limit) does not use its batch's rows: its
    locked read reads its account and person itself, as they are then."""
    from alm_accounts.refresher import selection

    monkeypatch.setattr(selection, "READ_ALONG_MAX_AGE", 0.0)
    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    alice = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))

    sent = refresher_statements(run_command)

    credential_table = table_of(alice)
    locked = [sql for sql in sent if sql.startswith("SELECT") and f"WHERE {credential_table}.\"id\" = " in sql]
    assert len(locked) == 1 and "client_secret" in locked[0].split(" FROM ")[0], locked
    alice.refresh_from_db()
    assert alice.refresh_count == 1


def test_the_runs_timeline_is_written_as_it_fills_a_write_and_the_rest_at_its_end():
    """refresher.timeline.Timeline: entries are written a write's worth at a time as results come, results
    without an entry (not due, busy) count for nothing, and close() writes the rest (the run calls it however it
    ends)."""
    from datetime import date

    from alm_accounts.refresher.timeline import Timeline
    from alm_accounts.services import RefreshResult, history

    written = []
    timeline = Timeline(write=written.append, per_write=2)
    day = date(2026, 12, 6)
    results = [RefreshResult(pk, f"grant {pk}", RefreshOutcome.REFRESHED, kind="user",
                             timeline=history.Entry("user", pk, day, 1, 0, 0, 0, 120, 120)) for pk in range(1, 6)]
    results.insert(2, RefreshResult(9, "grant 9", RefreshOutcome.NOT_DUE, kind="user"))

    for result in results:
        timeline.add(result)
    assert [[one.grant_id for one in chunk] for chunk in written] == [[1, 2], [3, 4]]
    timeline.close()
    timeline.close()  # nothing left: nothing written twice
    assert [[one.grant_id for one in chunk] for chunk in written] == [[1, 2], [3, 4], [5]]


def test_two_entries_of_one_grant_and_day_add_up_before_they_are_written():
    """The run's two refreshes of a grant on one day (a failure, then its recovery) are added together and written
    once; a later write adds to the row."""
    from datetime import date

    from alm_accounts.services import history

    day = date(2026, 12, 6)
    history.write([history.Entry("user", 7, day, 0, 1, 0, 0, 900, 900),
                   history.Entry("user", 7, day, 1, 0, 1, 0, 150, 150),
                   history.Entry("account", 7, day, 1, 0, 0, 1, 80, 80)])
    history.write([history.Entry("user", 7, day, 1, 0, 0, 0, 100, 100)])

    person = RefreshDay.objects.get(grant_kind="user", grant_id=7, day=day)
    assert (person.successes, person.failures, person.recoveries, person.latency_ms_total,
            person.latency_ms_max) == (2, 1, 1, 1150, 900)
    account = RefreshDay.objects.get(grant_kind="account", grant_id=7, day=day)
    assert (account.successes, account.keepalives) == (1, 1)


# --------------------------------------------------------------------------
# --processes: the rows read along travel with each grant to its worker process
# --------------------------------------------------------------------------


def test_worker_processes_are_sent_each_grants_rows_and_lock_only_its_own_row(fake_jira, monkeypatch):
    """With --processes, the run reads a batch's accounts and people once, as for its own threads, and sends each
    grant's rows with it: a worker's locked read of a person's credential is the credential's own row."""
    from concurrent.futures import Future

    from alm_accounts.models import RefresherRun
    from alm_accounts.refresher import run as run_module
    from alm_accounts.refresher.refresh import refresh_grant_once

    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    people = [connect_person(fake_jira, account, name, expires_in=timedelta(minutes=5)) for name in ("alice", "bob")]
    sent = {}

    class InlineWorkers:
        """Stands in for the worker processes: a grant handed out is refreshed at once, in this thread, with the
        rows it was sent."""

        def __init__(self, *, processes, concurrency):
            assert (processes, concurrency) == (2, 2)

        def submit(self, kind, pk, name, due_within, read_along=None):
            sent[(kind, pk)] = read_along
            future = Future()
            future.set_result(refresh_grant_once(kind, pk, name, due_within, read_along))
            return future

        def shutdown(self):
            pass

    monkeypatch.setattr(run_module, "WorkerPool", InlineWorkers)
    out = io.StringIO()
    report = Report(stdout=OutputWrapper(out), stderr=OutputWrapper(io.StringIO()), style=no_style(), verbosity=1)
    with CaptureQueriesContext(connection) as captured:
        end = run_module.Run(stop=run_module.Stop(), report=report, effects=run_module.Effects(), concurrency=2,
                             processes=2, accounts=[], due_within=None, dry_run=False,
                             mode=RefresherRun.Mode.ONCE).run()

    assert end.code == 0, out.getvalue()
    for person in people:
        rows = sent[("user", person.pk)]
        assert (rows["account"].pk, rows["user"].pk) == (account.pk, person.user_id)
    credential_table = table_of(people[0])
    locked = [sql for sql in statements_of(captured)
              if sql.startswith("SELECT") and f"WHERE {credential_table}.\"id\" = " in sql]
    assert len(locked) == 2 and not [sql for sql in locked if "client_secret" in sql.split(" FROM ")[0]], locked
    for person in people:
        person.refresh_from_db()
        assert person.refresh_count == 1
        assert_holds_jiras_current_pair(person, fake_jira)


def test_a_worker_process_refreshes_each_grant_with_the_rows_sent_through_its_pipe(fake_jira, monkeypatch):
    """The worker's end of the pipe: the rows arrive pickled, their secrets readable, and go to the grant's
    refresh; its result goes back under the job's number."""
    import multiprocessing
    import signal

    import django

    from alm_accounts.refresher import processes
    from alm_accounts.refresher import refresh as refresh_module

    account = connect_account(fake_jira, "Core", expires_in=timedelta(minutes=5))
    alice = connect_person(fake_jira, account, "alice", expires_in=timedelta(minutes=5))
    rows = {"account": ALMAccount.objects.get(pk=account.pk), "user": User.objects.get(pk=alice.user_id)}
    refreshed = []

    def refresh_one(kind, pk, name, due_within, read_along=None):
        refreshed.append((kind, pk, read_along))
        return services.RefreshResult(pk, name, RefreshOutcome.REFRESHED, kind=kind)

    monkeypatch.setattr(refresh_module, "refresh_one", refresh_one)
    monkeypatch.setattr(django, "setup", lambda: None)  # this process is set up; a spawned worker is not
    ours, theirs = multiprocessing.Pipe()
    ours.send((7, "user", alice.pk, "Core (alice)", None, rows))
    ours.send(None)  # the run's end: the worker finishes what it holds and returns
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        processes.worker_main(theirs, 1)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    assert ours.recv() == (7, True, services.RefreshResult(alice.pk, "Core (alice)", RefreshOutcome.REFRESHED,
                                                            kind="user"))
    ((kind, pk, along),) = refreshed
    assert (kind, pk) == ("user", alice.pk)
    assert along["account"] is not rows["account"] and along["account"].pk == account.pk
    assert along["account"].client_secret == rows["account"].client_secret != ""
    assert along["user"].username == "alice" and along["user"].is_active


def test_rows_that_cannot_be_pickled_are_left_out_and_the_grant_still_goes_to_its_worker():
    """A worker's locked read reads what did not travel; the run does not fail over a row it could not send."""
    import multiprocessing

    from alm_accounts.refresher.processes import send_job

    ours, theirs = multiprocessing.Pipe()
    send_job(ours, 3, ("user", 41, "Core (alice)", None, {"account": threading.Lock()}))
    assert theirs.recv() == (3, "user", 41, "Core (alice)", None, None)
    rows = {"user": User(username="bob")}
    send_job(ours, 4, ("user", 42, "Core (bob)", None, rows))
    *job, received = theirs.recv()
    assert job == [4, "user", 42, "Core (bob)", None] and received["user"].username == "bob"
