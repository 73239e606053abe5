"""The refresher's two statements, written once per process (services.row_statements), against the ORM's.

Each refresh locks its grant and writes Jira's new pair. Those two statements are written once from the models'
fields instead of being built by the ORM for every refresh; these tests hold them to exactly what the ORM's
`select_for_update(skip_locked=…, of=("self",), no_key=True)` reads and `save(update_fields=…)` writes, for both
kinds of grant, so that a model change or a Django upgrade that parts them fails here, not in a customer's refresh.
The locked read is written once only where there are row locks (PostgreSQL); the UPDATE on every database.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.utils import OperationalError
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alm_accounts.kinds import KINDS, fresh_column
from alm_accounts.models import ALMAccount, ALMCredential
from alm_accounts.services import GrantRef, row_statements
from alm_accounts.services.grants import TOKEN_FIELDS
from tests.conftest import in_thread
from tests.factories import AccountFactory, CredentialFactory

pytestmark = pytest.mark.django_db(transaction=True)
postgresql = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only")]
WAIT_SECONDS = 30  # only reached when something is broken
# What a refresh writes besides TOKEN_FIELDS when the grant was failing (services.grants._store_refreshed).
RECOVERY_FIELDS = ["status", "last_error", "failing_since", "alert_open", "token_scope"]


def columns(grant) -> dict:
    """Every column of the grant as the model holds it (tokens decrypted), and the columns read along."""
    held = {field.attname: getattr(grant, field.attname)
            for field in type(grant)._meta.get_fields() if field.concrete and not field.many_to_many}
    kind = KINDS[grant.grant_kind]
    read_along = [fresh_column(name, column) for name, names in kind.fresh_along.items() for column in names]
    held |= {name: getattr(grant, name) for name in read_along if hasattr(grant, name)}
    return held


def orm_locked(kind_key: str, pk: int, *, skip_locked: bool, along: bool):
    kind = KINDS[kind_key]
    queryset = kind.model.objects.select_for_update(skip_locked=skip_locked, of=("self",), no_key=True)
    return (kind.locking_along(queryset) if along else kind.locking(queryset)).filter(pk=pk).first()


@pytest.fixture
def varied_grants():
    """Grants whose columns hold every kind of value a lock reads: tokens and none, expiries and none, a failing
    grant with its alert open, an account whose client Jira refused, an active and an inactive person."""
    now = timezone.now().replace(microsecond=123456)
    core = AccountFactory(name="Core", failing=True, alert_open=True, client_refused_at=now - timedelta(hours=2),
                          client_checked_at=now - timedelta(minutes=3))
    never = AccountFactory(name="Never", connected=False)
    unknown_expiry = AccountFactory(name="Unknown expiry", expires_in=None)
    alice = CredentialFactory(account=core, user__username="alice", failing=True)
    bob = CredentialFactory(account=unknown_expiry, user__username="bob", user__is_active=False)
    carol = CredentialFactory(account=never, user__username="carol", connected=False)
    return [("account", core), ("account", never), ("account", unknown_expiry),
            ("user", alice), ("user", bob), ("user", carol)]


@pytest.mark.parametrize("skip_locked", [True, False])
@pytest.mark.parametrize("along", [True, False])
@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_the_locked_read_reads_what_the_orms_select_for_update_reads(varied_grants, skip_locked, along):
    for kind, grant in varied_grants:
        if not row_statements.written_once(kind, along=along):
            # A person's lock without their rows handed in reads account and person whole: the ORM's.
            assert kind == "user" and not along
            continue
        with transaction.atomic(), CaptureQueriesContext(connection) as captured:
            written_once = row_statements.lock(kind, grant.pk, skip_locked=skip_locked, along=along)
        with transaction.atomic():
            expected = orm_locked(kind, grant.pk, skip_locked=skip_locked, along=along)
        assert type(written_once) is type(expected) and written_once.pk == grant.pk
        assert not written_once.get_deferred_fields(), "every column is read under the lock, none later"
        assert columns(written_once) == columns(expected), (kind, grant)
        assert not written_once._state.adding and written_once._state.db == expected._state.db
        assert len(captured.captured_queries) == 1
        if along:  # what a person's refresh looks at, under the lock
            assert set(columns(written_once)) - set(columns(grant)) == {
                fresh_column(name, column) for name, names in KINDS[kind].fresh_along.items() for column in names}


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_the_read_along_values_are_the_rows_values_now_and_a_gone_grant_is_none(varied_grants):
    alice = next(grant for kind, grant in varied_grants if kind == "user")
    ALMAccount.objects.filter(pk=alice.account_id).update(client_refused_at=None)
    type(alice.user).objects.filter(pk=alice.user_id).update(is_active=False)
    with transaction.atomic():
        locked = GrantRef("user", alice.pk).locked(read_along={"account": alice.account, "user": alice.user})
        assert locked.account.client_refused_at is None and locked.user.is_active is False
        assert locked.account.name == "Core" and locked.account.client_secret == alice.account.client_secret
        assert row_statements.lock("user", alice.pk + 1000, skip_locked=True, along=True) is None
    with pytest.raises(transaction.TransactionManagementError):
        row_statements.lock("account", alice.account_id, skip_locked=False, along=False)


@pytest.mark.postgres
@pytest.mark.usefixtures("postgresql_only")
def test_the_locked_read_locks_the_grants_row_only_and_skips_a_row_another_holds(varied_grants):
    """As the ORM's NO KEY UPDATE OF the grant: another runner's lock of the same credential fails or skips it; its
    account and person stay free (an account's own refresh and an admin's edit of the person go on)."""
    alice = next(grant for kind, grant in varied_grants if kind == "user")
    locked, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            row_statements.lock("user", alice.pk, skip_locked=False, along=True)
            locked.set()
            release.wait(WAIT_SECONDS)

    thread, outcome = in_thread(hold)
    try:
        assert locked.wait(WAIT_SECONDS), outcome
        with transaction.atomic():
            assert row_statements.lock("user", alice.pk, skip_locked=True, along=True) is None
            with pytest.raises(OperationalError), transaction.atomic():
                ALMCredential.objects.select_for_update(nowait=True).get(pk=alice.pk)
            assert ALMAccount.objects.select_for_update(nowait=True).get(pk=alice.account_id).name == "Core"
            assert type(alice.user).objects.select_for_update(nowait=True).get(pk=alice.user_id).username == "alice"
    finally:
        release.set()
        thread.join(WAIT_SECONDS)
    assert "error" not in outcome, outcome
    with transaction.atomic():
        assert row_statements.lock("user", alice.pk, skip_locked=True, along=True).pk == alice.pk


def refreshed_in_memory(grant, now):
    """What _store_refreshed puts on a failing grant before its UPDATE: a new pair, counted, recovered."""
    grant.access_token, grant.refresh_token = f"ACCESS-new-{grant.pk}", f"REFRESH-new-{grant.pk}"
    grant.token_expires_at, grant.last_refreshed_at = now + timedelta(hours=1), now
    grant.refresh_count += 1
    grant.status, grant.last_error, grant.failing_since, grant.alert_open = (
        ALMAccount.Status.CONNECTED, "", None, False)
    grant.token_scope = "WRITE"


@pytest.mark.parametrize("kind", ["account", "user"])
def test_the_update_writes_what_save_with_update_fields_writes(kind):
    """Two twin grants, one written by the statement written once and one by Model.save(update_fields=…): every
    column reads back the same (tokens encrypted in the row), updated_at set by its auto_now, nothing else moved."""
    if kind == "account":
        twins = [AccountFactory(name=name, failing=True, alert_open=True) for name in ("Twin A", "Twin B")]
    else:
        account = AccountFactory(name="Twins")
        twins = [CredentialFactory(account=account, user__username=name, failing=True, tokens="same")
                 for name in ("ann", "ben")]
    model = type(twins[0])
    before = [columns(model.objects.get(pk=twin.pk)) for twin in twins]
    now = timezone.now()
    for twin in twins:
        refreshed_in_memory(twin, now)
    fields = TOKEN_FIELDS + RECOVERY_FIELDS
    started = timezone.now()
    with transaction.atomic():
        row_statements.store(twins[0], fields)
        twins[1].save(update_fields=fields)
    after = [columns(model.objects.get(pk=twin.pk)) for twin in twins]
    for was, now_holds, twin in zip(before, after, twins, strict=True):
        assert started <= now_holds["updated_at"] <= timezone.now()
        assert now_holds["updated_at"] == twin.updated_at  # pre_save put it on the grant, as save does
        moved = {name for name in now_holds if now_holds[name] != was[name]}
        assert moved <= {model._meta.get_field(name).attname for name in fields}, moved
    written = [{name: value for name, value in row.items() if name in fields and name != "updated_at"}
               for row in after]
    tokens = {"access_token", "refresh_token"}
    assert {name: value for name, value in written[0].items() if name not in tokens} == {
        name: value for name, value in written[1].items() if name not in tokens}
    assert written[0]["refresh_token"] == f"REFRESH-new-{twins[0].pk}" and written[0]["failing_since"] is None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT access_token, refresh_token FROM {model._meta.db_table} WHERE id = %s",  # noqa: S608
                       [twins[0].pk])
        stored = cursor.fetchone()
    assert not any("new" in value for value in stored), "the tokens are stored encrypted, as by save()"


def test_the_update_of_a_gone_grant_fails_as_save_does_and_only_columns_can_be_written():
    account = AccountFactory(name="Gone")
    ALMAccount.objects.filter(pk=account.pk).delete()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        row_statements.store(account, TOKEN_FIELDS)
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        account.save(update_fields=TOKEN_FIELDS)
    with pytest.raises(ValueError, match="Not columns"):
        row_statements.store(AccountFactory(name="Here"), ["id"])
