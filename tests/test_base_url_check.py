"""Get Auth Token checks a Jira Data Center base URL before sending the admin there (services.site_check).

Jira answers `GET /rest/api/2/serverInfo` anonymously: the form says what is wrong with the base URL, and what
to type instead, rather than leaving the admin on the browser's or Jira's error page.
"""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from alm_accounts.models import ALMAccount
from tests.conftest import CLIENT_SECRET, JIRA, add_form_data, change_form_data, server_info_answer

ADD_URL = reverse("admin:alm_accounts_almaccount_add")
SERVER_INFO = "/rest/api/2/serverInfo"


def get_auth_token(admin_client, **overrides):
    page = admin_client.get(ADD_URL).content.decode()
    callback_id = page.split('name="callback_url" value="', 1)[1].split('"', 1)[0]
    return admin_client.post(ADD_URL, add_form_data(callback_id, _get_auth_token="Save and get auth token",
                                                    **overrides))


def base_url_errors(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return html.unescape(str(response.context["adminform"].form.errors.get("base_url", "")))


def test_a_jira_that_answers_is_sent_to_for_consent_and_the_check_carries_no_credential(admin_client,
                                                                                        mocked_jira):
    response = get_auth_token(admin_client)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{JIRA}/rest/oauth2/latest/authorize?")
    (check,) = mocked_jira.base_url_checks
    assert check.request.url == JIRA + SERVER_INFO
    assert "Authorization" not in check.request.headers and "Cookie" not in check.request.headers
    assert CLIENT_SECRET not in check.request.url and "new-secret-abc" not in check.request.url
    assert check.request.body is None


def test_a_redirect_to_the_https_address_says_to_type_it(admin_client, mocked_jira, settings):
    settings.DEBUG = True  # http:// is accepted in development only
    http_jira = JIRA.replace("https://", "http://")
    mocked_jira.get(http_jira + SERVER_INFO, status=301, headers={"Location": JIRA + SERVER_INFO})

    errors = base_url_errors(get_auth_token(admin_client, base_url=http_jira))

    assert f"{http_jira} redirects to {JIRA}. Type {JIRA} instead." in errors
    assert not ALMAccount.objects.exists()


def test_a_login_page_in_front_of_the_url_is_named(admin_client, mocked_jira):
    other = "https://sso.example.com/login?next=x"
    mocked_jira.get("https://wiki.example.com" + SERVER_INFO, status=302, headers={"Location": other})

    errors = base_url_errors(get_auth_token(admin_client, base_url="https://wiki.example.com"))

    assert f"https://wiki.example.com redirects to {other} instead of answering as Jira" in errors


def test_a_site_that_is_not_jira_is_told(admin_client, mocked_jira):
    mocked_jira.get("https://intranet.example.com" + SERVER_INFO, status=200, body="<html>Welcome</html>")

    errors = base_url_errors(get_auth_token(admin_client, base_url="https://intranet.example.com"))

    assert "https://intranet.example.com answers, but not as Jira" in errors


def test_a_wrong_context_path_names_the_one_where_jira_answers(admin_client, mocked_jira):
    mocked_jira.get("https://jira2.example.com/jira" + SERVER_INFO, status=404, body="Not found")
    mocked_jira.get("https://jira2.example.com" + SERVER_INFO, status=200,
                    json=server_info_answer("https://jira2.example.com"))

    errors = base_url_errors(get_auth_token(admin_client, base_url="https://jira2.example.com/jira"))

    assert "No Jira at https://jira2.example.com/jira (HTTP 404), but Jira answers at https://jira2.example.com: " \
           "its context path is none. Type https://jira2.example.com instead." in errors


def test_jira_cloud_given_as_data_center_is_told(admin_client, mocked_jira):
    mocked_jira.get("https://kendis.example.com" + SERVER_INFO, status=200,
                    json={**server_info_answer("https://kendis.example.com"), "deploymentType": "Cloud"})

    errors = base_url_errors(get_auth_token(admin_client, base_url="https://kendis.example.com"))

    assert 'This is Jira Cloud: choose "Jira Cloud" under Authentication' in errors


def test_a_jira_that_fails_says_to_try_again_later(admin_client, mocked_jira):
    mocked_jira.get("https://down.example.com" + SERVER_INFO, status=503, body="")

    errors = base_url_errors(get_auth_token(admin_client, base_url="https://down.example.com"))

    assert "The Jira at https://down.example.com answered HTTP 503: it may be starting or down." in errors


@pytest.mark.parametrize("pasted, page", [
    (f"{JIRA}/secure/Dashboard.jspa", "/secure/Dashboard.jspa"),
    (f"{JIRA}/browse/CORE-12?focusedCommentId=1#x", "/browse/CORE-12?focusedCommentId=1#x"),
    (f"{JIRA}/projects/CORE/issues", "/projects/CORE/issues"),
])
def test_a_pasted_page_address_is_saved_as_its_base_url_with_a_note(admin_client, mocked_jira, pasted, page):
    response = admin_client.post(ADD_URL, add_form_data(
        admin_client.get(ADD_URL).content.decode().split('name="callback_url" value="', 1)[1].split('"', 1)[0],
        base_url=pasted, _continue="Save and continue editing"), follow=True)

    assert ALMAccount.objects.get().base_url == JIRA
    notes = [str(m) for m in response.context["messages"]]
    assert f"The Jira base URL was saved as {JIRA}: the page part of the pasted address ({page}) is not part of " \
           "it." in notes


def test_an_unchanged_account_is_checked_again_before_the_yearly_consent(admin_client, account, mocked_jira):
    mocked_jira.get(JIRA + SERVER_INFO, status=404, body="")  # Jira moved since the account was saved
    change = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])

    response = admin_client.post(change, change_form_data(account, _get_auth_token="Get Auth Token"))

    assert f"No Jira at {JIRA} (HTTP 404" in base_url_errors(response)


def test_a_plain_save_does_not_call_jira(admin_client, account, mocked_jira):
    change = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])

    response = admin_client.post(change, change_form_data(account, notify="ops@example.com"))

    assert response.status_code == 302
    assert mocked_jira.base_url_checks == []
