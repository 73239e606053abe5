"""Encryption keys: rotation, the reencrypt_secrets command, the system checks, and wrong keys.

FIELD_ENCRYPTION_KEY is a list: the first key encrypts, every key decrypts. A
value that no configured key can decrypt loads as UnreadableSecret: it is never
sent to Jira, never shown, and written back byte for byte.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings as django_settings
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError, OutputWrapper
from django.db import connection
from django.urls import reverse

from alm_accounts import services
from alm_accounts.checks import check_encryption_keys
from alm_accounts.fields import UnreadableSecret
from alm_accounts.management.commands import reencrypt_secrets
from alm_accounts.models import ALMAccount, ALMCredential, PendingAuthorization
from tests.conftest import ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN, TOKEN_URL, token_answer

OLD_KEY = django_settings.FIELD_ENCRYPTION_KEY[0]  # the test key every fixture encrypts with
NEW_KEY = Fernet.generate_key().decode()
WRONG_KEY = Fernet.generate_key().decode()
ROOT = Path(__file__).resolve().parent.parent

SECRET_COLUMNS = ["client_secret", "access_token", "refresh_token"]


def raw(model, pk: int, column: str) -> str | None:
    """The ciphertext exactly as stored, bypassing the model field."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {connection.ops.quote_name(column)} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def raw_account(account) -> dict[str, str | None]:
    return {column: raw(ALMAccount, account.pk, column) for column in SECRET_COLUMNS}


def opens_with(key: str, ciphertext: str) -> str | None:
    """The plaintext when `key` alone decrypts `ciphertext`, else None."""
    try:
        return Fernet(key.encode()).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        return None


def reencrypt(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reencrypt_secrets", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def manage_py(name: str, *argv: str) -> tuple[int, str, str]:
    """Run a command as `manage.py name argv...` does (system checks included), in this test's database.

    (run_from_argv itself would close the database connection of the test.)
    """
    command = load_command_class("alm_accounts", name)
    out, err = io.StringIO(), io.StringIO()
    command.stdout, command.stderr = OutputWrapper(out), OutputWrapper(err)
    options = vars(command.create_parser("manage.py", name).parse_args(list(argv)))
    args = options.pop("args", ())
    try:
        command.execute(*args, **options)
    except CommandError as exc:  # what run_from_argv does with it
        err.write(f"{type(exc).__name__}: {exc}\n")
        return exc.returncode, out.getvalue(), err.getvalue()
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def error_ids(messages) -> list[str]:
    return sorted(m.id for m in messages)


@pytest.fixture
def pending(connected_account, admin_user):
    """An authorization in progress: its PKCE verifier is a fourth stored secret."""
    return PendingAuthorization.objects.create(
        state_digest="0" * 64, account=connected_account, user=admin_user, session_binding_digest="1" * 64,
        code_verifier="VERIFIER-" + "v" * 50,
    )


# --------------------------------------------------------------------------
# The key list: first encrypts, all decrypt
# --------------------------------------------------------------------------


def test_first_key_encrypts_and_every_key_decrypts(settings, account):
    stored_with_old = raw(ALMAccount, account.pk, "client_secret")
    assert opens_with(OLD_KEY, stored_with_old) == CLIENT_SECRET

    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    assert ALMAccount.objects.get(pk=account.pk).client_secret == CLIENT_SECRET  # old key still decrypts

    account.client_secret = "NEW-SECRET-1234"
    account.save()
    stored_with_new = raw(ALMAccount, account.pk, "client_secret")
    assert opens_with(NEW_KEY, stored_with_new) == "NEW-SECRET-1234"  # the first key encrypts
    assert opens_with(OLD_KEY, stored_with_new) is None
    assert ALMAccount.objects.get(pk=account.pk).client_secret == "NEW-SECRET-1234"

    settings.FIELD_ENCRYPTION_KEY = [OLD_KEY, NEW_KEY]  # order does not matter for reading
    assert ALMAccount.objects.get(pk=account.pk).client_secret == "NEW-SECRET-1234"

    settings.FIELD_ENCRYPTION_KEY = [OLD_KEY]  # the key that wrote it is gone
    assert isinstance(ALMAccount.objects.get(pk=account.pk).client_secret, UnreadableSecret)


def test_a_key_rotation_set_in_the_environment_reads_old_secrets_and_writes_with_the_new_key():
    """FIELD_ENCRYPTION_KEY="<new>, <old>" as an operator types it: secrets stored under the old key still read,
    and what is stored from now on is encrypted with the new one (the old key can go after reencrypt_secrets)."""
    stored_before = Fernet(OLD_KEY.encode()).encrypt(b"SECRET-STORED-UNDER-THE-OLD-KEY").decode()
    env = {**os.environ, "ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "kendis_integration.settings", "DEBUG": "true",
           "FIELD_ENCRYPTION_KEY": f"{NEW_KEY}, {OLD_KEY}"}
    code = ("import sys, django; django.setup(); from alm_accounts.fields import decrypt, encrypt; "
            "print(decrypt(sys.argv[1])); print(encrypt('SECRET-STORED-NOW'))")
    result = subprocess.run([sys.executable, "-c", code, stored_before], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    read_back, stored_now = result.stdout.strip().splitlines()
    assert read_back == "SECRET-STORED-UNDER-THE-OLD-KEY"
    assert opens_with(NEW_KEY, stored_now) == "SECRET-STORED-NOW"
    assert opens_with(OLD_KEY, stored_now) is None


# --------------------------------------------------------------------------
# manage.py reencrypt_secrets
# --------------------------------------------------------------------------


def test_reencrypt_secrets_moves_every_secret_to_the_first_key(settings, connected_account, pending):
    before = raw_account(connected_account)
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    assert error_ids(check_encryption_keys()) == ["alm_accounts.W001"]

    out, err = reencrypt()

    assert "4 secret(s) re-encrypted, 0 already current, 0 unreadable." in out
    assert err == ""
    after = raw_account(connected_account)
    for column, plaintext in zip(SECRET_COLUMNS, [CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN], strict=True):
        assert after[column] != before[column]
        assert opens_with(NEW_KEY, after[column]) == plaintext, column
        assert opens_with(OLD_KEY, after[column]) is None, column
    assert opens_with(NEW_KEY, raw(PendingAuthorization, pending.pk, "code_verifier")) == "VERIFIER-" + "v" * 50
    assert check_encryption_keys() == []

    # The old key can now be removed: everything still reads.
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY]
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert (account.client_secret, account.access_token, account.refresh_token) == (
        CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN)
    assert PendingAuthorization.objects.get(pk=pending.pk).code_verifier == "VERIFIER-" + "v" * 50
    assert check_encryption_keys() == []


def test_people_s_credentials_are_checked_and_reencrypted_too(settings, connected_account, admin_user):
    """A person's own Jira tokens (user-based sync) are secrets like the account's: the key checks see them and
    reencrypt_secrets moves them to the new key, so that the old key can be removed without losing them."""
    credential = ALMCredential.objects.create(account=connected_account, user=admin_user, access_token="PERSON-AT-1",
                                              refresh_token="PERSON-RT-1", status="connected")
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]

    out, _ = reencrypt()

    assert "5 secret(s) re-encrypted" in out  # the account's three and the person's two
    for column, plaintext in (("access_token", "PERSON-AT-1"), ("refresh_token", "PERSON-RT-1")):
        assert opens_with(NEW_KEY, raw(ALMCredential, credential.pk, column)) == plaintext, column
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY]
    assert ALMCredential.objects.get(pk=credential.pk).refresh_token == "PERSON-RT-1"
    assert check_encryption_keys(databases=["default"]) == []


def test_reencrypt_secrets_is_idempotent(settings, connected_account, pending):
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    reencrypt()
    first = raw_account(connected_account)

    out, _ = reencrypt()

    assert "0 secret(s) re-encrypted, 4 already current, 0 unreadable." in out
    assert raw_account(connected_account) == first  # nothing rewritten


def test_reencrypt_secrets_dry_run_counts_and_writes_nothing(settings, connected_account):
    before = raw_account(connected_account)
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]

    out, _ = reencrypt("--dry-run")

    assert "3 secret(s) would be re-encrypted, 0 already current, 0 unreadable." in out
    assert raw_account(connected_account) == before


def test_reencrypt_secrets_interrupted_then_run_again_finishes_the_job(settings, connected_account, monkeypatch):
    second = ALMAccount.objects.create(name="Jira - Payments", base_url="https://jira2.example.com",
                                       client_id="cid-2", client_secret="SECOND-SECRET-42")
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    real_write = reencrypt_secrets.Command._write
    writes = []

    def write_then_die(*args):
        if writes:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C after the first row
        writes.append(args)
        return real_write(*args)

    monkeypatch.setattr(reencrypt_secrets.Command, "_write", staticmethod(write_then_die))
    with pytest.raises(KeyboardInterrupt):
        reencrypt()
    monkeypatch.undo()

    # Half done: one row on the new key, one still on the old; both readable.
    on_new = [opens_with(NEW_KEY, raw(ALMAccount, a.pk, "client_secret")) is not None
              for a in (connected_account, second)]
    assert sorted(on_new) == [False, True]
    assert ALMAccount.objects.get(pk=second.pk).client_secret == "SECOND-SECRET-42"

    out, _ = reencrypt()

    assert "0 unreadable" in out and "already current" in out
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY]
    assert ALMAccount.objects.get(pk=connected_account.pk).refresh_token == REFRESH_TOKEN
    assert ALMAccount.objects.get(pk=second.pk).client_secret == "SECOND-SECRET-42"
    assert check_encryption_keys() == []


def test_reencrypt_secrets_leaves_unreadable_values_untouched_and_fails(settings, connected_account):
    settings.FIELD_ENCRYPTION_KEY = [WRONG_KEY]
    lost = ALMAccount.objects.create(name="Jira - Lost key", base_url="https://jira3.example.com",
                                     client_id="cid-3", client_secret="LOST-SECRET-99")
    lost_ciphertext = raw(ALMAccount, lost.pk, "client_secret")
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]

    code, out, err = manage_py("reencrypt_secrets")

    assert code == 1
    assert "add the key they were encrypted with" in err
    assert "3 secret(s) re-encrypted, 0 already current, 1 unreadable." in out
    assert f"#{lost.pk}: client_secret cannot be decrypted" in err
    assert raw(ALMAccount, lost.pk, "client_secret") == lost_ciphertext  # byte for byte
    # The readable secrets were re-encrypted all the same.
    assert opens_with(NEW_KEY, raw(ALMAccount, connected_account.pk, "refresh_token")) == REFRESH_TOKEN


# --------------------------------------------------------------------------
# System checks
# --------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [
    ["not-a-fernet-key"],
    [NEW_KEY, "short"],
    [NEW_KEY[:-2]],
    [],
    [""],
], ids=["garbage", "second-key-malformed", "truncated", "empty-list", "blank"])
def test_malformed_or_missing_key_is_check_e001(settings, db, keys):
    settings.FIELD_ENCRYPTION_KEY = keys
    problems = check_encryption_keys()
    assert error_ids(problems) == ["alm_accounts.E001"]
    assert "FIELD_ENCRYPTION_KEY" in problems[0].msg
    assert problems[0].hint
    for key in keys:  # the check never prints a key
        if len(key) > 8:
            assert key not in problems[0].msg + problems[0].hint


def test_manage_py_check_reports_a_malformed_key_as_e001_instead_of_crashing(tmp_path):
    env = {**os.environ, "ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "kendis_integration.settings", "DEBUG": "true",
           "FIELD_ENCRYPTION_KEY": "this-is-not-a-fernet-key", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "alm_accounts.E001" in output, output[-2000:]
    assert "Traceback" not in output
    assert "this-is-not-a-fernet-key" not in output


def test_wrong_key_is_check_e002(settings, connected_account):
    assert check_encryption_keys() == []
    settings.FIELD_ENCRYPTION_KEY = [WRONG_KEY]
    problems = check_encryption_keys()
    assert error_ids(problems) == ["alm_accounts.E002"]
    assert "3 stored secret(s) cannot be decrypted" in problems[0].msg


def test_old_key_still_in_use_is_check_w001(settings, connected_account):
    settings.FIELD_ENCRYPTION_KEY = [NEW_KEY, OLD_KEY]
    problems = check_encryption_keys()
    assert error_ids(problems) == ["alm_accounts.W001"]
    assert "reencrypt_secrets" in problems[0].hint


def test_check_before_migrate_does_not_fail(settings, db, monkeypatch):
    from django.db import DatabaseError

    from alm_accounts import checks

    def no_tables():
        raise DatabaseError("no such table: alm_accounts_almaccount")

    monkeypatch.setattr(checks, "stored_ciphertexts", no_tables)
    assert check_encryption_keys() == []


# --------------------------------------------------------------------------
# A wrong key: the ciphertext is never used as a secret, sent or shown
# --------------------------------------------------------------------------


@pytest.fixture
def wrong_key(settings, connected_account):
    """The account was saved with the test key; the server now runs with another one."""
    stored = raw_account(connected_account)
    settings.FIELD_ENCRYPTION_KEY = [WRONG_KEY]
    return stored


def test_wrong_key_loads_secrets_as_unreadable(wrong_key, connected_account):
    account = ALMAccount.objects.get(pk=connected_account.pk)
    for column in SECRET_COLUMNS:
        value = getattr(account, column)
        assert isinstance(value, UnreadableSecret), column
        assert not isinstance(value, str)
        assert wrong_key[column] not in (str(value), repr(value), f"{value}")
    assert account.unreadable_secrets == ["client secret", "access token", "refresh token"]


def test_wrong_key_get_auth_token_sends_nothing_to_jira(wrong_key, connected_account, admin_user, mocked_jira, rf):
    request = rf.get("/")
    request.session = {}
    with pytest.raises(services.ServiceError, match="cannot be decrypted with the configured FIELD_ENCRYPTION_KEY"):
        services.start_authorization(account=ALMAccount.objects.get(pk=connected_account.pk), user=admin_user,
                                     session=request.session)
    assert len(mocked_jira.calls) == 0
    assert not PendingAuthorization.objects.exists()


def test_wrong_key_admin_get_auth_token_shows_error_and_stays_here(wrong_key, connected_account, admin_client,
                                                                  mocked_jira):
    url = reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk])
    response = admin_client.post(url, {
        "alm_type": "jira", "name": connected_account.name, "authentication": "jira_server_oauth2",
        "base_url": connected_account.base_url, "client_id": connected_account.client_id, "client_secret": "",
        "scope": "ADMIN", "_get_auth_token": "Get Auth Token"})
    assert response.status_code == 302
    assert response["Location"] == url  # back to the account, not to Jira
    page = admin_client.get(url).content.decode()
    assert "cannot be decrypted with the configured FIELD_ENCRYPTION_KEY" in page
    assert len(mocked_jira.calls) == 0
    assert raw_account(connected_account) == wrong_key


def test_wrong_key_refresh_test_connection_and_disconnect_send_nothing(wrong_key, connected_account, mocked_jira):
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))
    result = services.refresh_account(account_id=connected_account.pk, actor="test")
    assert result.failed
    assert "cannot be decrypted" in result.message

    with pytest.raises(services.ServiceError, match="cannot be decrypted"):
        services.test_connection(account=ALMAccount.objects.get(pk=connected_account.pk), actor="test")
    with pytest.raises(services.ServiceError, match="cannot be decrypted"):
        services.jira_request(account=ALMAccount.objects.get(pk=connected_account.pk), method="GET",
                              path="/rest/api/2/myself")

    message = services.disconnect(account=ALMAccount.objects.get(pk=connected_account.pk), actor="test")
    assert "did not confirm the revocation" in message
    assert len(mocked_jira.calls) == 0
    # The client secret survives the disconnect byte for byte (only the tokens are wiped).
    assert raw(ALMAccount, connected_account.pk, "client_secret") == wrong_key["client_secret"]


def test_wrong_key_refresh_tokens_command_sends_nothing_and_fails(wrong_key, connected_account, mocked_jira,
                                                                  run_command):
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))
    # One worker: the rows live in this test's open transaction, invisible to other threads' connections.
    run = run_command("--force", "--concurrency", "1")
    assert run.code == 1
    assert "cannot be decrypted" in run.out
    assert len(mocked_jira.calls) == 0
    assert raw_account(connected_account) == wrong_key


def test_readable_client_secret_but_unreadable_tokens_send_nothing(settings, connected_account, mocked_jira):
    """After a key change the admin re-pasted the Client Secret; the old tokens still cannot be read."""
    settings.FIELD_ENCRYPTION_KEY = [WRONG_KEY]
    account = ALMAccount.objects.get(pk=connected_account.pk)
    account.client_secret = "REPASTED-SECRET-77"
    account.save()
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))
    mocked_jira.must_not_be_asked(mocked_jira.get("https://jira.example.com/jira/rest/api/2/myself",
                                                  json={"name": "x"}))

    assert services.refresh_account(account_id=account.pk, actor="test").failed
    with pytest.raises(services.ServiceError, match="cannot be decrypted"):
        services.test_connection(account=ALMAccount.objects.get(pk=account.pk), actor="test")
    services.disconnect(account=ALMAccount.objects.get(pk=account.pk), actor="test")
    assert len(mocked_jira.calls) == 0


def test_unreadable_pkce_verifier_is_never_sent(settings, account, admin_client, mocked_jira):
    url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    response = admin_client.post(url, {
        "alm_type": "jira", "name": account.name, "authentication": "jira_server_oauth2",
        "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
        "_get_auth_token": "Get Auth Token"})
    state = dict(p.split("=", 1) for p in response["Location"].split("?", 1)[1].split("&"))["state"]
    settings.FIELD_ENCRYPTION_KEY = [WRONG_KEY]
    account = ALMAccount.objects.get(pk=account.pk)
    account.client_secret = "REPASTED-SECRET-77"  # the client secret is readable again, the verifier is not
    account.save()
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))

    callback = admin_client.get(account.callback_url.replace("http://testserver", ""),
                                {"code": "CODE-1", "state": state})

    assert callback.status_code == 302
    page = admin_client.get(callback["Location"]).content.decode()
    assert "could not be read back (encryption key changed)" in page
    assert len(mocked_jira.calls) == 0
    assert ALMAccount.objects.get(pk=account.pk).refresh_token is None


def test_wrong_key_admin_pages_never_show_the_ciphertext(wrong_key, connected_account, admin_client):
    change = admin_client.get(reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk]))
    listing = admin_client.get(reverse("admin:alm_accounts_almaccount_changelist"))
    history = admin_client.get(reverse("admin:alm_accounts_almaccount_history", args=[connected_account.pk]))
    assert change.status_code == listing.status_code == history.status_code == 200
    html = change.content.decode()
    assert "Stored client secret, access token, refresh token cannot be decrypted" in html
    for page in (change, listing, history):
        text = page.content.decode()
        for column, ciphertext in wrong_key.items():
            assert ciphertext not in text, column
            assert ciphertext[:40] not in text, column
        assert "gAAAAA" not in text  # no Fernet token at all
        assert "secret that cannot be decrypted" not in text  # nor the placeholder as a value


def test_wrong_key_view_only_admin_never_sees_the_ciphertext(wrong_key, connected_account, client):
    from tests.conftest import staff_user

    client.force_login(staff_user("viewer", "view_almaccount"))
    page = client.get(reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "gAAAAA" not in text
    assert "secret that cannot be decrypted" not in text


def test_wrong_key_saving_in_admin_keeps_the_ciphertext_byte_for_byte(wrong_key, connected_account, admin_client,
                                                                     settings):
    url = reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk])
    response = admin_client.post(url, {
        "alm_type": "jira", "name": "Jira - Core Banking (renamed)", "authentication": "jira_server_oauth2",
        "base_url": connected_account.base_url, "client_id": connected_account.client_id, "client_secret": "",
        "scope": "ADMIN", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ALMAccount.objects.get(pk=connected_account.pk).name == "Jira - Core Banking (renamed)"
    assert raw_account(connected_account) == wrong_key

    # Once the right key is back, everything reads again.
    settings.FIELD_ENCRYPTION_KEY = [OLD_KEY]
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert (account.client_secret, account.access_token, account.refresh_token) == (
        CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN)


def test_wrong_key_form_error_rerender_keeps_the_ciphertext_hidden(wrong_key, connected_account, admin_client):
    url = reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk])
    response = admin_client.post(url, {
        "alm_type": "jira", "name": "", "authentication": "jira_server_oauth2",
        "base_url": connected_account.base_url, "client_id": connected_account.client_id, "client_secret": "",
        "scope": "ADMIN", "_save": "Save"})
    assert response.status_code == 200  # re-rendered with an error
    text = response.content.decode()
    assert "errorlist" in text
    assert "gAAAAA" not in text
    assert raw_account(connected_account) == wrong_key


def test_reencrypt_secrets_with_a_malformed_key_fails_clearly(settings, connected_account):
    before = raw_account(connected_account)
    settings.FIELD_ENCRYPTION_KEY = ["not-a-fernet-key", OLD_KEY]
    code, out, err = manage_py("reencrypt_secrets")
    assert code == 1
    assert "not a Fernet key" in err
    assert "Traceback" not in err
    assert raw_account(connected_account) == before


def test_values_in_django_encrypted_model_fields_format_read_back(account):
    """Secrets stay in the library's format: what its own fields wrote, SecretField reads, and vice versa."""
    from django.db import connection
    from encrypted_model_fields.fields import decrypt_str, encrypt_str

    with connection.cursor() as cursor:
        cursor.execute("UPDATE alm_accounts_almaccount SET client_secret = %s WHERE id = %s",
                       [encrypt_str("written-by-the-library").decode(), account.pk])
    account.refresh_from_db()
    assert account.client_secret == "written-by-the-library"

    account.client_secret = "written-by-secretfield"
    account.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM alm_accounts_almaccount WHERE id = %s", [account.pk])
        assert decrypt_str(cursor.fetchone()[0]) == "written-by-secretfield"
