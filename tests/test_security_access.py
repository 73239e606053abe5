"""Access control: who may see an ALM account, and who may start, finish, refresh, test or disconnect.

Only active staff with the change permission act; view-only staff see the
status without buttons; anonymous users go to the login page; the callback
completes only in the session and for the user that clicked Get Auth Token;
every button is a POST protected by CSRF.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from alm_accounts.models import ALMAccount, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    MYSELF_URL,
    REFRESH_TOKEN,
    SERVER_INFO_URL,
    TOKEN_URL,
    change_url,
    query_of,
    staff_user,
    token_answer,
)

BUTTONS = ["test_connection", "refresh_token", "disconnect"]
# How each button appears in the page (the labels alone also occur in help texts).
BUTTON_MARKUP = ['name="_get_auth_token"', ">Test connection</button>", ">Refresh token now</button>",
                 ">Disconnect</button>"]


def button_url(account, name: str) -> str:
    return reverse(f"admin:alm_accounts_almaccount_{name}", args=[account.pk])


def callback_path(account) -> str:
    return urlsplit(account.callback_url).path


def form_data(account, **extra) -> dict:
    return {"alm_type": "jira", "name": account.name, "authentication": "jira_server_oauth2",
            "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": "ADMIN",
            **extra}


def snapshot() -> list[dict]:
    """Every account row, secrets decrypted: equal before and after means nothing was changed."""
    return [
        {**row, "secrets": (a.client_secret, a.access_token, a.refresh_token)}
        for row, a in zip(ALMAccount.objects.order_by("pk").values(), ALMAccount.objects.order_by("pk"), strict=True)
    ]


def start(client, account) -> str:
    """Click Get Auth Token as `client`; return the state sent to Jira."""
    response = client.post(change_url(account), form_data(account, _get_auth_token="Get Auth Token"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"].startswith(account.base_url)
    return query_of(response["Location"])["state"]


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def every_admin_request(account):
    """(method, url, data) of every admin page and action on an account."""
    return [
        ("get", reverse("admin:alm_accounts_almaccount_changelist"), None),
        ("get", reverse("admin:alm_accounts_almaccount_add"), None),
        ("get", change_url(account), None),
        ("post", change_url(account), form_data(account, _get_auth_token="Get Auth Token")),
        ("post", change_url(account), form_data(account, name="Renamed", _save="Save")),
        ("post", reverse("admin:alm_accounts_almaccount_delete", args=[account.pk]), {"post": "yes"}),
        ("post", reverse("admin:alm_accounts_almaccount_changelist"),
         {"action": "refresh_selected", "_selected_action": [account.pk]}),
        *[("post", button_url(account, name), None) for name in BUTTONS],
    ]


# --------------------------------------------------------------------------
# Anonymous, inactive and non-staff users: to the login page
# --------------------------------------------------------------------------


@pytest.fixture
def inactive_superuser(db):
    return User.objects.create_superuser("gone", "gone@example.com", "pw", is_active=False)


@pytest.mark.parametrize("who", ["anonymous", "non-staff user with all permissions", "inactive superuser"])
def test_users_who_are_not_active_staff_go_to_login(who, client, connected_account, mocked_jira, inactive_superuser):
    if who == "non-staff user with all permissions":
        user = User.objects.create_user("plain", password="pw")
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="alm_accounts"))
        client.force_login(user)
    elif who == "inactive superuser":
        client.force_login(inactive_superuser)
    before = snapshot()
    for method, url, data in every_admin_request(connected_account):
        response = getattr(client, method)(url, data)
        assert is_login_redirect(response), (method, url, response.status_code)
    response = client.get(callback_path(connected_account), {"code": "CODE-1", "state": "S" * 43})
    assert is_login_redirect(response)
    assert "CODE-1" not in response["Location"]  # the login redirect never carries the code
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0
    assert not PendingAuthorization.objects.exists()


# --------------------------------------------------------------------------
# Staff without the permissions
# --------------------------------------------------------------------------


def test_staff_without_permissions_get_no_access(client, connected_account, mocked_jira):
    client.force_login(staff_user("nobody"))
    before = snapshot()
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "ALM Accounts" not in index.content.decode()
    for method, url, data in every_admin_request(connected_account):
        response = getattr(client, method)(url, data)
        assert response.status_code == 403, (method, url, response.status_code)
    callback = client.get(callback_path(connected_account), {"code": "CODE-1", "state": "S" * 43})
    assert callback.status_code == 403
    assert "You are not allowed to connect ALM accounts." in callback.content.decode()
    assert "CODE-1" not in callback.content.decode()
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# View-only staff: status, no buttons, no actions
# --------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client, db):
    client.force_login(staff_user("viewer", "view_almaccount"))
    return client


def test_view_only_staff_see_the_status_but_no_buttons(viewer_client, connected_account):
    page = viewer_client.get(change_url(connected_account))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Connected" in html and "Jira Admin (jadmin)" in html
    assert "Present; the access token expires at" in html
    for markup in BUTTON_MARKUP:
        assert markup not in html, markup
    for name in BUTTONS:
        assert button_url(connected_account, name) not in html, name
    assert 'name="_save"' not in html
    for secret in (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN):
        assert secret not in html  # read-only fields must not render the stored secrets

    listing = viewer_client.get(reverse("admin:alm_accounts_almaccount_changelist")).content.decode()
    assert "Jira - Core Banking" in listing and "Connected" in listing
    assert "refresh_selected" not in listing


def test_view_only_staff_cannot_act(viewer_client, connected_account, mocked_jira):
    before = snapshot()
    for name in BUTTONS:
        assert viewer_client.post(button_url(connected_account, name)).status_code == 403, name
    assert viewer_client.post(
        change_url(connected_account), form_data(connected_account, _get_auth_token="Get Auth Token")
    ).status_code == 403
    assert viewer_client.post(
        change_url(connected_account), form_data(connected_account, name="Renamed", _save="Save")
    ).status_code == 403
    viewer_client.post(reverse("admin:alm_accounts_almaccount_changelist"),
                       {"action": "refresh_selected", "_selected_action": [connected_account.pk]})
    callback = viewer_client.get(callback_path(connected_account), {"code": "CODE-1", "state": "S" * 43})
    assert callback.status_code == 403
    assert "You are not allowed to connect ALM accounts." in callback.content.decode()
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0
    assert not PendingAuthorization.objects.exists()
    assert not AuthEvent.objects.exists()


def test_staff_with_change_permission_see_the_buttons(client, connected_account):
    client.force_login(staff_user("operator", "view_almaccount", "change_almaccount"))
    html = client.get(change_url(connected_account)).content.decode()
    for markup in BUTTON_MARKUP:
        assert markup in html, markup


def test_staff_with_change_permission_can_test_the_connection(client, connected_account, mocked_jira):
    client.force_login(staff_user("operator", "view_almaccount", "change_almaccount"))
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    mocked_jira.get(SERVER_INFO_URL, json={"version": "9.12.1", "baseUrl": "https://jira.example.com/jira"})
    response = client.post(button_url(connected_account, "test_connection"))
    assert response.status_code == 302
    assert "Connected to Jira 9.12.1" in client.get(response["Location"]).content.decode()


# --------------------------------------------------------------------------
# The callback completes only for the session and user that started it
# --------------------------------------------------------------------------


@pytest.fixture
def other_admin(db):
    return User.objects.create_superuser("other-admin", "other@example.com", "pw")


@pytest.mark.parametrize("intruder", ["another admin", "the same admin in another browser"])
def test_callback_completes_only_in_the_session_and_for_the_user_that_started(
    intruder, admin_client, admin_user, other_admin, account, mocked_jira
):
    state = start(admin_client, account)
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    before = snapshot()

    other = Client()
    other.force_login(other_admin if intruder == "another admin" else admin_user)
    response = other.get(callback_path(account), {"code": "CODE-1", "state": state})

    assert response.status_code == 302
    page = other.get(response["Location"]).content.decode()
    assert "This authorization was started in another browser session or by another user; finish it there." in page
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0

    # The admin who started it can still finish it.
    response = admin_client.get(callback_path(account), {"code": "CODE-1", "state": state})
    assert "Connected to Jira as Jira Admin" in admin_client.get(response["Location"]).content.decode()
    assert ALMAccount.objects.get(pk=account.pk).status == ALMAccount.Status.CONNECTED


def test_callback_survives_login_again_in_the_same_browser(admin_client, admin_user, account, mocked_jira):
    """Logging in again (new session key) in the browser that started keeps the authorization valid."""
    state = start(admin_client, account)
    admin_client.force_login(admin_user)  # cycles the session key, keeps its data
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    response = admin_client.get(callback_path(account), {"code": "CODE-1", "state": state})
    assert "Connected to Jira as Jira Admin" in admin_client.get(response["Location"]).content.decode()


def test_callback_after_logout_is_refused(admin_client, admin_user, account, mocked_jira):
    state = start(admin_client, account)
    admin_client.logout()
    admin_client.force_login(admin_user)
    before = snapshot()
    response = admin_client.get(callback_path(account), {"code": "CODE-1", "state": state})
    assert "started in another browser session" in admin_client.get(response["Location"]).content.decode()
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Buttons are POSTs with CSRF
# --------------------------------------------------------------------------


@pytest.fixture
def csrf_client(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    return client


def csrf_token_of(client, account) -> str:
    html = client.get(change_url(account)).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@pytest.mark.parametrize("action", [*BUTTONS, "get_auth_token", "refresh_selected"])
def test_buttons_refuse_a_post_without_csrf_token(action, csrf_client, admin_user, connected_account, mocked_jira):
    refreshes = mocked_jira.post(TOKEN_URL, json=token_answer())
    if action not in ("refresh_token", "refresh_selected"):
        mocked_jira.must_not_be_asked(refreshes)  # asked only by the refresh buttons, with the CSRF token
    before = snapshot()
    if action == "get_auth_token":
        url, data = change_url(connected_account), form_data(connected_account, _get_auth_token="Get Auth Token")
    elif action == "refresh_selected":
        url = reverse("admin:alm_accounts_almaccount_changelist")
        data = {"action": "refresh_selected", "_selected_action": [connected_account.pk]}
    else:
        url, data = button_url(connected_account, action), {}

    response = csrf_client.post(url, data)

    assert response.status_code == 403
    assert "CSRF verification failed" in response.content.decode()
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0
    assert not PendingAuthorization.objects.exists()
    assert not AuthEvent.objects.exists()

    # The same POST with the page's token goes through and acts (every action records an event as the
    # admin): the 403 was CSRF, nothing else.
    accepted = csrf_client.post(url, {**data, "csrfmiddlewaretoken": csrf_token_of(csrf_client, connected_account)})
    assert accepted.status_code == 302 and not is_login_redirect(accepted)
    assert AuthEvent.objects.filter(actor=admin_user.username).exists()


@pytest.mark.parametrize("name", BUTTONS)
def test_buttons_refuse_get(name, admin_client, connected_account, mocked_jira):
    before = snapshot()
    response = admin_client.get(button_url(connected_account, name))
    assert response.status_code == 405
    assert snapshot() == before
    assert len(mocked_jira.calls) == 0
