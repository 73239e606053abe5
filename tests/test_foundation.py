"""Issue 2 - the foundation: the ALM account model, its admin screens, settings and the setup commands."""

from __future__ import annotations

import html
import importlib.util
import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from alm_accounts.models import ALMAccount
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    add_form_data,
    change_form_data,
    change_url,
    staff_user,
)

ROOT = Path(__file__).resolve().parent.parent
ADD_URL = reverse("admin:alm_accounts_almaccount_add")
LIST_URL = reverse("admin:alm_accounts_almaccount_changelist")
TEST_KEY = "n8kL0dTb8K3xQ5Nf4o9hZ2Yp6Wq1Rj7Vc0Sa3Ue5Gm8="


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def callback_field(html_text: str) -> tuple[str, str]:
    """(the posted callback id, the Callback URL shown in the box) of a rendered account form."""
    posted = re.search(r'<input type="hidden" name="callback_url" value="([^"]*)">', html_text)
    shown = re.search(r'id="callback-url" value="([^"]*)"', html_text)
    assert posted and shown, "the form has no Callback URL box"
    return posted.group(1), html.unescape(shown.group(1))


def add_data(callback_id: str, **overrides) -> dict:
    return add_form_data(callback_id, **overrides)


def change_data(account, **overrides) -> dict:
    return change_form_data(account, **overrides)


def raw_columns(account, *columns) -> tuple:
    table = connection.ops.quote_name(ALMAccount._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} WHERE id = %s", [account.pk])
        return cursor.fetchone()


# --------------------------------------------------------------------------
# Model validation of the Jira base URL
# --------------------------------------------------------------------------


def validate(base_url: str) -> None:
    ALMAccount(name="Jira", base_url=base_url).full_clean()


@pytest.mark.parametrize(
    "url",
    [
        "https://jira.example.com",
        "https://jira.example.com/jira",
        "https://jira.example.com:8443/jira/tools",
        "https://10.1.2.3/jira",
        "http://localhost:2990/jira",
        "http://127.0.0.1:8080",
        "http://[::1]:8080/jira",
    ],
)
def test_good_base_urls_validate(db, settings, url):
    settings.DEBUG = False
    validate(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://jira.example.com", "starting with https://"),
        ("jira.example.com/jira", "starting with https://"),
        ("javascript:alert(1)", "starting with https://"),
        ("https://", "starting with https://"),
        ("https://admin:pw@jira.example.com/jira", "user name or password"),
        ("https://jira.example.com/jira?os_authType=basic", "query"),
        ("https://jira.example.com/jira#top", "fragment"),
        ("https://jira example.com", "spaces"),
        (" https://jira.example.com", "spaces"),
        ("https://jira.example.com:port/jira", "https://host[:port]"),
        ("https://jira.example.com:0/jira", "port"),
        ("https://jira_example.com", "host name"),
        ("https://jira.example.com/" + "j" * 500, "too long"),
        ("http://jira.example.com/jira", "requires https://"),
        ("http://localhost.example.com/jira", "requires https://"),
    ],
)
def test_bad_base_urls_are_refused_with_a_reason(db, settings, url, says):
    settings.DEBUG = False
    with pytest.raises(ValidationError) as caught:
        validate(url)
    errors = caught.value.message_dict
    assert list(errors) == ["base_url"]
    assert says in " ".join(errors["base_url"])


def test_http_base_url_is_allowed_in_debug_only(db, settings):
    settings.DEBUG = True
    validate("http://jira.internal.example.com/jira")
    settings.DEBUG = False
    with pytest.raises(ValidationError, match="requires https://"):
        validate("http://jira.internal.example.com/jira")


def test_add_form_normalises_trailing_slash_and_keeps_context_path(admin_client, settings):
    settings.DEBUG = False
    callback_id, _ = callback_field(page(admin_client.get(ADD_URL)))
    response = admin_client.post(ADD_URL, add_data(callback_id, base_url="  https://jira.example.com:8443/jira/  "))
    assert response.status_code == 302
    assert ALMAccount.objects.get().base_url == "https://jira.example.com:8443/jira"


def test_add_form_refuses_http_base_url_outside_debug(admin_client, settings):
    settings.DEBUG = False
    callback_id, _ = callback_field(page(admin_client.get(ADD_URL)))
    text = page(admin_client.post(ADD_URL, add_data(callback_id, base_url="http://jira.example.com/jira")))
    assert "Jira requires https:// for OAuth 2.0" in text
    assert not ALMAccount.objects.exists()


# --------------------------------------------------------------------------
# The admin: index, list, search, filter
# --------------------------------------------------------------------------


def test_alm_accounts_are_under_settings_in_the_admin(admin_client):
    text = page(admin_client.get(reverse("admin:index")))
    assert re.search(r">Settings</a>", text)
    assert f'href="{LIST_URL}"' in text and ">ALM Accounts<" in text


@pytest.fixture
def three_accounts(connected_account):
    payments = ALMAccount.objects.create(name="Jira - Payments", base_url="https://jira2.example.org")
    broken = ALMAccount.objects.create(
        name="Jira - Lending", base_url="https://jira3.example.net/jira", status=ALMAccount.Status.ERROR
    )
    return connected_account, payments, broken


def names_listed(text: str) -> set[str]:
    return set(re.findall(r'<th class="field-name"><a href="[^"]*">([^<]*)</a></th>', text))


def test_list_shows_the_columns_an_admin_needs(admin_client, three_accounts):
    text = page(admin_client.get(LIST_URL))
    table = text[text.index('<table id="result_list">') :]
    head = table[: table.index("</thead>")]
    for column in ["Account Name", "ALM Type", "Jira base URL", "Status", "Connected as", "Token expires",
                   "Last refresh"]:
        assert f">{column}<" in head, column
    assert names_listed(text) == {"Jira - Core Banking", "Jira - Payments", "Jira - Lending"}
    assert '<span class="alm-status alm-status-connected">Connected</span>' in text
    assert '<span class="alm-status alm-status-not_connected">Not connected</span>' in text
    assert '<span class="alm-status alm-status-error">Error</span>' in text
    assert "Jira Admin (jadmin)" in text
    assert "https://jira2.example.org" in text
    assert "Atlassian JIRA" in text


def test_list_search_by_name_and_by_url(admin_client, three_accounts):
    assert names_listed(page(admin_client.get(LIST_URL, {"q": "Payments"}))) == {"Jira - Payments"}
    assert names_listed(page(admin_client.get(LIST_URL, {"q": "jira3.example.net"}))) == {"Jira - Lending"}
    assert names_listed(page(admin_client.get(LIST_URL, {"q": "no-such-jira"}))) == set()


def test_list_filter_by_status(admin_client, three_accounts):
    text = page(admin_client.get(LIST_URL))
    assert "By status" in text or "By Status" in text
    assert names_listed(page(admin_client.get(LIST_URL, {"status__exact": "connected"}))) == {"Jira - Core Banking"}
    assert names_listed(page(admin_client.get(LIST_URL, {"status__exact": "error"}))) == {"Jira - Lending"}
    assert names_listed(page(admin_client.get(LIST_URL, {"status__exact": "not_connected"}))) == {"Jira - Payments"}


# --------------------------------------------------------------------------
# The add form: order of the walk-through, Callback URL before the first save
# --------------------------------------------------------------------------


def test_add_form_follows_the_setup_walk_through(admin_client):
    text = page(admin_client.get(ADD_URL))
    order = ["alm_type", "name", "authentication", "base_url", "callback_url", "client_id", "client_secret",
             "scope"]
    positions = [text.index(f'name="{field}"') for field in order]
    assert positions == sorted(positions)
    assert "Atlassian JIRA" in text
    assert "Use OAuth 2.0" in text
    assert 'value="Save and get auth token"' in text
    # the Permission defaults to Admin, as step II.5 recommends
    assert re.search(r'<option value="ADMIN" selected>', text)


def test_callback_url_is_shown_with_copy_button_before_the_first_save(admin_client, settings):
    text = page(admin_client.get(ADD_URL))
    callback_id, shown = callback_field(text)
    assert shown.startswith(settings.PUBLIC_BASE_URL + "/")
    assert callback_id in shown
    assert len(callback_id) >= 22  # at least 128 bits, unguessable
    button = re.search(r'<button type="button" class="button copy-url" data-copy-target="([^"]+)">Copy URL</button>',
                       text)
    assert button and f'id="{button.group(1)}"' in text
    assert "alm_accounts/copy_url.js" in text


def test_callback_url_is_stable_across_reloads_and_is_the_saved_accounts_url(admin_client):
    first_id, first_url = callback_field(page(admin_client.get(ADD_URL)))
    again_id, again_url = callback_field(page(admin_client.get(ADD_URL)))
    assert (again_id, again_url) == (first_id, first_url)

    # an invalid submit does not change it either: it may already be pasted into Jira
    text = page(admin_client.post(ADD_URL, add_data(first_id, base_url="not a url")))
    assert callback_field(text) == (first_id, first_url)
    assert callback_field(page(admin_client.get(ADD_URL)))[1] == first_url

    response = admin_client.post(ADD_URL, add_data(first_id))
    assert response.status_code == 302
    account = ALMAccount.objects.get()
    assert account.callback_url == first_url

    # the saved account shows the same URL, and the next new account gets another one
    assert callback_field(page(admin_client.get(change_url(account))))[1] == first_url
    assert callback_field(page(admin_client.get(ADD_URL)))[1] != first_url


def test_other_admin_sessions_get_other_callback_urls(admin_client, admin_user):
    other = Client()
    other.force_login(admin_user)
    assert callback_field(page(admin_client.get(ADD_URL)))[1] != callback_field(page(other.get(ADD_URL)))[1]


def test_callback_url_used_meanwhile_in_another_tab_is_replaced_visibly(admin_client):
    callback_id, url = callback_field(page(admin_client.get(ADD_URL)))
    assert admin_client.post(ADD_URL, add_data(callback_id, name="Tab one")).status_code == 302

    text = page(admin_client.post(ADD_URL, add_data(callback_id, name="Tab two")))
    assert "This Callback URL was just used by another ALM account" in html.unescape(text)
    new_id, new_url = callback_field(text)
    assert new_url != url
    assert ALMAccount.objects.count() == 1

    assert admin_client.post(ADD_URL, add_data(new_id, name="Tab two")).status_code == 302
    assert ALMAccount.objects.get(name="Tab two").callback_url == new_url


def test_tampered_callback_id_is_refused_on_add(admin_client):
    text = page(admin_client.post(ADD_URL, add_data("../../admin")))
    assert "The callback URL of this form is not valid; reload the page." in text
    assert not ALMAccount.objects.exists()


def test_callback_url_never_changes_on_edit(admin_client, account):
    before = account.callback_url
    response = admin_client.post(
        change_url(account), change_data(account, name="Renamed", callback_url="AAAAAAAAAAAAAAAAAAAAAAAA")
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "Renamed"
    assert account.callback_url == before
    assert callback_field(page(admin_client.get(change_url(account))))[1] == before


# --------------------------------------------------------------------------
# Secrets: write-only client secret, tokens never shown, ciphertext at rest
# --------------------------------------------------------------------------


def test_client_secret_is_a_password_input_that_never_renders_the_stored_value(admin_client, connected_account):
    text = page(admin_client.get(change_url(connected_account)))
    field = re.search(r'<input type="password" name="client_secret"[^>]*>', text)
    assert field, "the Client Secret is not a password input"
    assert "value=" not in field.group(0)
    assert "A Client Secret is stored (encrypted). Leave blank to keep it" in text
    assert CLIENT_SECRET not in text
    (ciphertext,) = raw_columns(connected_account, "client_secret")
    assert ciphertext not in text


def test_blank_client_secret_on_edit_keeps_the_stored_one(admin_client, account):
    response = admin_client.post(change_url(account), change_data(account, name="Core Banking (prod)"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "Core Banking (prod)"
    assert account.client_secret == CLIENT_SECRET


def test_new_client_secret_on_edit_replaces_the_stored_one(admin_client, account):
    response = admin_client.post(change_url(account), change_data(account, client_secret="  pasted-again-999  "))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.client_secret == "pasted-again-999"


def test_client_secret_with_inner_spaces_is_refused(admin_client, account):
    text = page(admin_client.post(change_url(account), change_data(account, client_secret="half pasted")))
    assert "The Client Secret must not contain spaces" in text
    account.refresh_from_db()
    assert account.client_secret == CLIENT_SECRET


def test_tokens_are_never_shown_only_presence_and_expiry(admin_client, connected_account):
    text = page(admin_client.get(change_url(connected_account)))
    assert "Present; the access token expires at" in text
    for token in (ACCESS_TOKEN, REFRESH_TOKEN):
        assert token not in text
    assert not re.search(r'<(input|textarea)[^>]*name="(access_token|refresh_token)"', text)
    listing = page(admin_client.get(LIST_URL))
    assert ACCESS_TOKEN not in listing and REFRESH_TOKEN not in listing


def test_account_without_tokens_says_so(admin_client, account):
    assert "No token yet: click Get Auth Token." in page(admin_client.get(change_url(account)))


def test_tokens_cannot_be_set_through_the_form(admin_client, connected_account):
    data = change_data(connected_account, access_token="FORGED-ACCESS", refresh_token="FORGED-REFRESH",
                       status="not_connected")
    assert admin_client.post(change_url(connected_account), data).status_code == 302
    connected_account.refresh_from_db()
    assert connected_account.access_token == ACCESS_TOKEN
    assert connected_account.refresh_token == REFRESH_TOKEN
    assert connected_account.status == ALMAccount.Status.CONNECTED


def test_no_stored_secret_appears_in_any_admin_page(admin_client, connected_account):
    connected_account.events.create(actor="jira-admin-user", kind="connected", outcome="ok", message="Connected")
    ciphertexts = [c for c in raw_columns(connected_account, "client_secret", "access_token", "refresh_token")]
    pages = [
        reverse("admin:index"),
        LIST_URL,
        ADD_URL,
        change_url(connected_account),
        reverse("admin:alm_accounts_almaccount_history", args=[connected_account.pk]),
        reverse("admin:alm_accounts_almaccount_delete", args=[connected_account.pk]),
        reverse("admin:alm_accounts_authevent_changelist"),
    ]
    for url in pages:
        text = page(admin_client.get(url))
        for secret in (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, *ciphertexts):
            assert secret not in text, url


def test_database_columns_hold_ciphertext(admin_client):
    callback_id, _ = callback_field(page(admin_client.get(ADD_URL)))
    assert admin_client.post(ADD_URL, add_data(callback_id, client_secret=CLIENT_SECRET)).status_code == 302
    account = ALMAccount.objects.get()
    account.access_token, account.refresh_token = ACCESS_TOKEN, REFRESH_TOKEN
    account.save()

    stored = raw_columns(account, "client_secret", "access_token", "refresh_token")
    fernet = Fernet(TEST_KEY)
    for ciphertext, plaintext in zip(stored, (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN), strict=True):
        assert plaintext not in ciphertext
        assert fernet.decrypt(ciphertext.encode()).decode() == plaintext
    account.refresh_from_db()
    assert (account.client_secret, account.access_token) == (CLIENT_SECRET, ACCESS_TOKEN)


# --------------------------------------------------------------------------
# Who may use the screens
# --------------------------------------------------------------------------


def test_view_only_staff_sees_the_account_but_cannot_change_it(client, account):
    client.force_login(staff_user("viewer", "view_almaccount"))
    text = page(client.get(change_url(account)))
    assert account.name in text
    assert CLIENT_SECRET not in text
    (ciphertext,) = raw_columns(account, "client_secret")
    assert ciphertext not in text
    assert "Stored (encrypted)" in text
    assert "_get_auth_token" not in text  # no button to start a connection
    response = client.post(change_url(account), change_data(account, name="Hijacked"))
    assert response.status_code == 403
    account.refresh_from_db()
    assert account.name == "Jira - Core Banking"


def test_anonymous_is_sent_to_the_login_page(client, account):
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --------------------------------------------------------------------------
# Settings errors (a fresh process with a clean environment)
# --------------------------------------------------------------------------

SETUP = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='kendis_integration.settings'; django.setup()"
PRODUCTION_ENV = {
    "ENV_FILE": "",
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789",
    "ALLOWED_HOSTS": "kendis.example.com",
    "PUBLIC_BASE_URL": "https://kendis.example.com",
    "FIELD_ENCRYPTION_KEY": TEST_KEY,
    "DATABASE_URL": "postgres://kendis:secret@db.example.com:5432/kendis",
}


def run_python(env: dict, code: str = SETUP, *args: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1", **env}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_complete_production_environment_starts():
    result = run_python(PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["SECRET_KEY", "ALLOWED_HOSTS", "PUBLIC_BASE_URL", "FIELD_ENCRYPTION_KEY",
                                  "DATABASE_URL"])
@pytest.mark.parametrize("how", ["missing", "blank"])
def test_missing_required_setting_stops_the_start_naming_it(name, how):
    env = dict(PRODUCTION_ENV)
    if how == "missing":
        del env[name]
    else:
        env[name] = "   "
    result = run_python(env)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: The environment variable {name} is required when DEBUG is off" in result.stderr


def test_debug_needs_only_the_encryption_key():
    result = run_python({"ENV_FILE": "", "DEBUG": "true", "FIELD_ENCRYPTION_KEY": TEST_KEY})
    assert result.returncode == 0, result.stderr
    result = run_python({"ENV_FILE": "", "DEBUG": "true"})
    assert result.returncode != 0
    assert "The environment variable FIELD_ENCRYPTION_KEY is required" in result.stderr


def test_http_public_base_url_is_refused_outside_debug():
    result = run_python({**PRODUCTION_ENV, "PUBLIC_BASE_URL": "http://kendis.example.com"})
    assert result.returncode != 0
    assert "PUBLIC_BASE_URL must use https:// when DEBUG is off" in result.stderr


def test_env_file_is_read_and_real_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in PRODUCTION_ENV.items() if k != "ENV_FILE"))
    show = SETUP + "; from django.conf import settings; print(settings.PUBLIC_BASE_URL, settings.SECRET_KEY)"
    result = run_python({"ENV_FILE": str(env_file)}, show)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["https://kendis.example.com", PRODUCTION_ENV["SECRET_KEY"]]
    result = run_python({"ENV_FILE": str(env_file), "PUBLIC_BASE_URL": "https://other.example.com"}, show)
    assert result.stdout.split()[0] == "https://other.example.com"


def test_malformed_encryption_key_stops_the_start_naming_it(tmp_path):
    env = {**PRODUCTION_ENV, "FIELD_ENCRYPTION_KEY": f"{TEST_KEY},not-a-fernet-key",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    check = SETUP + "; from django.core.management import call_command; call_command('check')"
    result = run_python(env, check)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY" in result.stderr
    assert "Fernet key" in result.stderr


# --------------------------------------------------------------------------
# Setup commands: ensure_admin, scripts/make_env.py
# --------------------------------------------------------------------------


def ensure_admin() -> str:
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_ensure_admin_creates_the_admin_once_and_prints_the_generated_password(db, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = ensure_admin()
    user = User.objects.get()
    assert user.username == "admin" and user.is_superuser and user.is_staff
    password = re.search(r"with password: (\S+)", first).group(1)
    assert user.check_password(password)

    second = ensure_admin()
    assert "already exists" in second
    assert password not in second
    assert User.objects.count() == 1
    user.refresh_from_db()
    assert user.check_password(password)


def test_ensure_admin_uses_the_given_name_and_password(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Given-Pw-4711")
    output = ensure_admin()
    assert "Given-Pw-4711" not in output
    assert User.objects.get(username="ops").check_password("Given-Pw-4711")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Another-Pw-0815")
    ensure_admin()
    assert User.objects.get(username="ops").check_password("Given-Pw-4711")  # an existing user is left alone


@pytest.fixture
def make_env(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_env_under_test", ROOT / "scripts" / "make_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ENV_FILE", tmp_path / ".env")
    monkeypatch.setattr(sys, "argv", ["make_env.py"])
    return module


def test_make_env_writes_fresh_usable_keys(make_env):
    assert make_env.main() == 0
    env_file = make_env.ENV_FILE
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
                  and not line.startswith("#"))
    assert len(values["SECRET_KEY"]) >= 50
    Fernet(values["FIELD_ENCRYPTION_KEY"])  # a valid key
    assert values["DEBUG"] == "true"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_make_env_never_overwrites_an_existing_env(make_env, capsys):
    assert make_env.main() == 0
    written = make_env.ENV_FILE.read_text()
    capsys.readouterr()
    assert make_env.main() == 0
    assert make_env.ENV_FILE.read_text() == written
    assert "kept as it is" in capsys.readouterr().out

    make_env.ENV_FILE.write_text("FIELD_ENCRYPTION_KEY=my-precious-key\n")
    make_env.main()
    assert make_env.ENV_FILE.read_text() == "FIELD_ENCRYPTION_KEY=my-precious-key\n"


def test_the_env_make_env_writes_is_what_the_app_starts_with(make_env, tmp_path):
    """`make run` relies on it: the app starts on that file alone, its checks pass, it uses the file's
    SECRET_KEY, and secrets are encrypted with the file's FIELD_ENCRYPTION_KEY."""
    make_env.main()
    values = dict(line.split("=", 1) for line in make_env.ENV_FILE.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    show = SETUP + ("; from django.core.management import call_command; call_command('check'); "
                    "from django.conf import settings; from alm_accounts.fields import encrypt; "
                    "print(settings.DEBUG, settings.SECRET_KEY, encrypt('stored-with-the-env-key'))")
    # The database is the only thing not from the file (its default is the project's own db.sqlite3).
    result = run_python({"ENV_FILE": str(make_env.ENV_FILE), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                        show)
    assert result.returncode == 0, result.stderr
    debug, secret_key, ciphertext = result.stdout.strip().splitlines()[-1].split()
    assert (debug, secret_key) == ("True", values["SECRET_KEY"])
    assert Fernet(values["FIELD_ENCRYPTION_KEY"]).decrypt(ciphertext.encode()) == b"stored-with-the-env-key"


@pytest.mark.parametrize("value", ["0", "-1", "601"])
def test_a_jira_timeout_outside_its_range_stops_the_start_naming_it(value):
    result = run_python({**PRODUCTION_ENV, "JIRA_READ_TIMEOUT": value})
    assert result.returncode != 0
    assert "JIRA_READ_TIMEOUT must be a number of seconds above 0 and at most 600" in result.stderr
