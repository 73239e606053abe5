"""The screens of an administrator's and an ops engineer's first hour (issue 19) that are words, not layout.

The layout and the provider-dependent words are checked in a real browser
(tests/e2e/test_first_hour_browser.py); here: My ALM Credentials once connected, one date format, Atlassian's
own advice when Atlassian cannot be reached, the base URL message in development, and the Users screens.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import requests
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential
from tests.conftest import ACCESS_TOKEN, CLOUD_SERVER_INFO_URL, CLOUD_TOKEN_URL, REFRESH_TOKEN, staff_user

DATE = re.compile(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC\b")
DJANGO_DEFAULT_DATE = re.compile(r"\b(a\.m\.|p\.m\.|noon|midnight)|\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                                 r"[a-z]*\.? \d{1,2}, \d{4}")


def text_of(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_my_alm_credentials_no_longer_speaks_of_until_you_connect_once_connected(client, account):
    person = staff_user("erin")
    ALMCredential.objects.create(account=account, user=person, access_token=ACCESS_TOKEN,
                                 refresh_token=REFRESH_TOKEN, status=ALMCredential.Status.CONNECTED,
                                 token_expires_at=timezone.now() + timedelta(hours=1), connected_as_name="erin")
    client.force_login(person)

    page = text_of(client.get(reverse("my_alm_credentials")))

    assert "Connected as erin" in page
    assert "acts as the account's connection until you connect" not in page
    assert "You are connected: the product acts in Jira as you." in page


def test_every_date_on_an_accounts_page_and_in_the_list_has_one_format_with_the_time_zone(admin_client,
                                                                                          connected_account):
    ALMAccount.objects.filter(pk=connected_account.pk).update(last_refreshed_at=timezone.now())
    services.record_event(connected_account, actor="test", kind="test_connection", ok=True, message="ok")

    for url in (reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk]),
                reverse("admin:alm_accounts_almaccount_changelist"),
                reverse("admin:alm_accounts_authevent_changelist")):
        page = text_of(admin_client.get(url))
        assert DATE.search(page), url
        assert not DJANGO_DEFAULT_DATE.search(page), (url, DJANGO_DEFAULT_DATE.search(page).group(0))


def test_atlassian_out_of_reach_is_not_blamed_on_the_jira_base_url(connected_cloud_account, mocked_jira):
    mocked_jira.post(CLOUD_TOKEN_URL, body=requests.ConnectTimeout("no route"))
    ALMAccount.objects.filter(pk=connected_cloud_account.pk).update(token_expires_at=timezone.now())

    result = services.refresh_account(account_id=connected_cloud_account.pk, actor="test")

    assert "Check the Jira base URL" not in result.message
    assert "Check that this server can reach Atlassian" in result.message


def test_atlassian_out_of_reach_on_test_connection(admin_client, connected_cloud_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_cloud_account.pk).update(
        token_expires_at=timezone.now() + timedelta(hours=1))
    mocked_jira.get(re.compile(re.escape(CLOUD_SERVER_INFO_URL.rsplit("/", 1)[0]) + ".*"),
                    body=requests.ConnectTimeout("no route"))

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_test_connection",
                                         args=[connected_cloud_account.pk]), follow=True)

    (message,) = [str(m) for m in response.context["messages"]]
    assert message.startswith("Test connection failed")
    assert "Check the Jira base URL" not in message
    assert "Check that this server can reach Atlassian" in message


@pytest.mark.parametrize("debug, says_http", [(True, True), (False, False)])
def test_the_missing_scheme_message_says_http_where_http_is_accepted(admin_client, settings, debug, says_http):
    settings.DEBUG = debug
    add = reverse("admin:alm_accounts_almaccount_add")
    page = admin_client.get(add).content.decode()
    callback_id = page.split('name="callback_url" value="', 1)[1].split('"', 1)[0]

    response = admin_client.post(add, {"alm_type": "jira", "name": "Jira", "authentication": "jira_server_oauth2",
                                       "base_url": "jira.example.com/jira", "callback_url": callback_id,
                                       "scope": "ADMIN"})

    errors = str(response.context["adminform"].form.errors["base_url"])
    assert "Enter the Jira base URL starting with https://" in errors
    assert ("or http:// in development" in errors) is says_http


def test_the_users_add_form_offers_staff_status_and_says_it_is_all_my_alm_credentials_needs(admin_client):
    add = reverse("admin:auth_user_add")
    page = text_of(admin_client.get(add))
    assert "Staff status" in page
    assert "that is all My ALM Credentials needs" in page

    response = admin_client.post(add, {"username": "finn", "usable_password": "true", "password1": "Fi-nn-pw-2026!x",
                                       "password2": "Fi-nn-pw-2026!x", "is_staff": "on", "_save": "Save"})

    assert response.status_code == 302, response.content.decode()[:2000]
    finn = User.objects.get(username="finn")
    assert finn.is_staff and not finn.is_superuser and not finn.user_permissions.exists()
    change = text_of(admin_client.get(reverse("admin:auth_user_change", args=[finn.pk])))
    assert "that is all My ALM Credentials needs" in change
    admin_client.force_login(finn)
    assert admin_client.get(reverse("my_alm_credentials")).status_code == 200
