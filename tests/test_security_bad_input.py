"""Security review (issue 18), items 6 and 7: hostile or odd input gets a clear refusal, never a token sent where
it does not belong, a traceback or a 500."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import responses
from django.core.exceptions import ValidationError
from django.urls import reverse

from alm_accounts import services
from alm_accounts.models import ALMAccount, PendingAuthorization
from tests.conftest import (
    CLIENT_SECRET,
    JIRA,
    MYSELF_URL,
    TOKEN_URL,
    add_form_data,
    change_form_data,
    query_of,
    staff_user,
    token_answer,
)

# --------------------------------------------------------------------------
# Item 6: Tomcat path parameters. Jira Data Center runs on Tomcat, which drops a segment's ";parameters" before
# resolving dot segments: "/rest/..;/..;/x" is "/x", outside Jira's context path, on the same host.
# --------------------------------------------------------------------------

TOMCAT_DOT_SEGMENTS = ["/rest/..;/..;/x", "/rest/%2E%2e;/x", "/rest/api/2/..;jsessionid=1/..;/x", "/.;/x",
                       "/rest/%2e%2e%3b/x"]


@pytest.mark.parametrize("path", TOMCAT_DOT_SEGMENTS)
def test_a_dot_segment_with_path_parameters_is_refused_on_data_center(connected_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0  # the Bearer token went nowhere


@pytest.mark.parametrize("path", TOMCAT_DOT_SEGMENTS)
def test_a_dot_segment_with_path_parameters_is_refused_on_jira_cloud(connected_cloud_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_cloud_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Item 7: bad input that gave a traceback or a 500
# --------------------------------------------------------------------------


@pytest.mark.parametrize("account", ["²", "12²", "9" * 20])  # digits to isdigit(), not to int(); beyond any id
@pytest.mark.parametrize("command", [
    ("jira_call", "--skip-checks", "{account}", "GET", "/x"),
    ("refresh_tokens", "--account", "{account}"),
], ids=["jira_call", "refresh_tokens"])
def test_an_account_number_no_id_can_have_exits_2_with_one_line(db, run_command, command, account):
    name, *args = (arg.format(account=account) for arg in command)

    run = run_command.of(name, *args)

    assert run.code == 2, run
    assert run.err.strip() == f"CommandError: No ALM account named or numbered {account!r}."


@pytest.mark.parametrize("query", [
    "created_at__year=99999999999",
    "created_at__year=2026&created_at__month=99999999999",
    "created_at__year=2026&created_at__month=1&created_at__day=99999999999999999999",
    "created_at__year=9999",  # the year after it does not exist
    "created_at__year=9999&created_at__month=12",
])
@pytest.mark.parametrize("records", ["authevent", "alert"])
def test_the_audit_trail_and_alerts_lists_survive_an_impossible_date_drill_down(admin_client, records, query):
    url = reverse(f"admin:alm_accounts_{records}_changelist")
    response = admin_client.get(f"{url}?{query}", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(f"{url}?e=1", 302)]  # Django's answer to a bad filter: the whole list


def test_connect_to_an_account_that_is_not_ready_answers_as_a_missing_one(client, db):
    """Posting Connect with ids one by one must not name accounts a staff user cannot see (they are not ready for
    people, so not on My ALM Credentials)."""
    hidden = ALMAccount.objects.create(name="Jira - Mergers (secret project)", base_url=JIRA, client_id="cid")
    client.force_login(staff_user("alice"))
    for button in ("connect", "test", "disconnect"):
        answers = [client.post(reverse(f"my_alm_credentials_{button}", args=[account_id]))
                   for account_id in (hidden.pk, hidden.pk + 1000)]
        assert [answer.status_code for answer in answers] == [404, 404], button
    page = client.get(reverse("my_alm_credentials")).content.decode()
    assert "Mergers" not in page
    assert not PendingAuthorization.objects.exists()


@pytest.mark.parametrize("name", ["Jira\r\nBcc: everyone@example.com", "Jira\tCore", "Jira\x1b[31mRed",
                                  "Jira\u2028Core", "Jira - Payments\u202eskrow", "Jira \u2066Core\u2069",
                                  "Jira\u200f"])
def test_account_names_with_control_or_direction_characters_are_refused(admin_client, name):
    callback_id = admin_client.get(reverse("admin:alm_accounts_almaccount_add")).context["adminform"].form[
        "callback_url"].value()
    response = admin_client.post(reverse("admin:alm_accounts_almaccount_add"),
                                 add_form_data(callback_id, name=name, client_secret=CLIENT_SECRET))
    assert response.status_code == 200
    assert "nor characters that change the direction of the text" in response.content.decode()
    assert not ALMAccount.objects.exists()


def test_ordinary_names_in_any_script_are_kept(admin_client):
    callback_id = admin_client.get(reverse("admin:alm_accounts_almaccount_add")).context["adminform"].form[
        "callback_url"].value()
    name = "Jira – Zahlungen (שירות) 北京"
    response = admin_client.post(reverse("admin:alm_accounts_almaccount_add"), add_form_data(callback_id, name=name))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ALMAccount.objects.get().name == name


@pytest.mark.parametrize(("url", "says"), [
    ("https://2130706433/jira", "four decimal numbers"),
    ("https://0x7f.0.0.1/jira", "four decimal numbers"),
    ("https://0x7f000001", "four decimal numbers"),
    ("https://127.1/jira", "four decimal numbers"),
    ("https://0177.0.0.1/jira", "four decimal numbers"),
    ("https://[::ffff:127.0.0.1]/jira", "four decimal numbers"),  # IPv4-mapped IPv6: 127.0.0.1 again
    ("https://[::ffff:7f00:1]/jira", "four decimal numbers"),
    ("https://[0:0:0:0:0:ffff:10.0.0.5]:8443/jira", "four decimal numbers"),
    ("https://jira.example.com/jira/..", "'.' or '..'"),
    ("https://jira.example.com/jira/../admin", "'.' or '..'"),
    ("https://jira.example.com/./jira", "'.' or '..'"),
    ("https://jira.example.com/jira/%2e%2e", "'.' or '..'"),
    ("https://jira.example.com/jira/..;x=1", "'.' or '..'"),
])
def test_base_urls_in_numeric_host_spellings_or_with_dot_segments_are_refused(db, settings, url, says):
    settings.DEBUG = False
    with pytest.raises(ValidationError) as caught:
        ALMAccount(name="Jira", base_url=url, client_id="cid").full_clean()
    assert says in " ".join(caught.value.message_dict["base_url"])


@pytest.mark.parametrize("url", ["https://10.1.2.3/jira", "https://jira.example.com/jira", "https://jira.123.example.com",
                                 "https://0x.example.com/jira", "https://jira.example.com/jira..old"])
def test_base_urls_written_plainly_are_still_accepted(db, settings, url):
    settings.DEBUG = False
    ALMAccount(name="Jira", base_url=url, client_id="cid").full_clean()


# --------------------------------------------------------------------------
# Review of items 6 and 7: other spellings of a dot segment. A front proxy (nginx, Apache, IIS) may decode the
# path once more before Tomcat does, and IIS (and some proxies) read '\' as '/': "/rest/..%5c..%5cx" and
# "/rest/%252e%252e/x" reach "/x" there. Unicode's compatibility dots (U+FF0E, U+2025) become '.' for a server
# that normalises the path.
# --------------------------------------------------------------------------

OTHER_DOT_SPELLINGS = ["/rest/..%5c..%5cx", "/rest/api/2/..%5Cx", "/rest/%252e%252e/x", "/rest/%252e%252e%253b/x",
                       "/rest/%25252e%25252e/x", "/rest/\uff0e\uff0e/x", "/rest/\u2025/x", "/rest/%EF%BC%8E%EF%BC%8E/x"]


@pytest.mark.parametrize("path", OTHER_DOT_SPELLINGS)
def test_other_spellings_of_a_dot_segment_are_refused_on_data_center(connected_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0


@pytest.mark.parametrize("path", OTHER_DOT_SPELLINGS)
def test_other_spellings_of_a_dot_segment_are_refused_on_jira_cloud(connected_cloud_account, mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath, match="nothing was sent"):
        services.jira_request(account=connected_cloud_account, method="GET", path=path)
    assert len(mocked_jira.calls) == 0


@pytest.mark.parametrize("path", [
    "/rest/api/2/search?jql=project%20%3D%20KAN%3B%20text%20~%20%22..%22",  # ';' and '..' in the query
    "/rest/api/2/search?jql=summary~%22a/../b%22&fields=summary;key",
    "/rest/api/2/issue/KAN-1;x=1",  # a ';' in a segment that is not a dot segment
    "/rest/api/2/filter/v1.0..draft",
    "/rest/api/2/project/100%25",
])
def test_legitimate_paths_with_semicolons_and_dots_still_reach_jira(connected_account, mocked_jira, path):
    mocked_jira.add(responses.GET, f"{JIRA}{path.split('?', 1)[0]}", json={"ok": True})
    assert services.jira_request(account=connected_account, method="GET", path=path) == {"ok": True}
    sent = mocked_jira.calls[-1].request.url
    assert sent == f"{JIRA}{path}"


@pytest.mark.parametrize("url", [
    "https://jira.example.com/jira/..%5c", "https://jira.example.com/jira\\..", "https://jira.example.com/jira/%252e%252e",
    "https://jira.example.com/jira/\uff0e\uff0e",
])
def test_base_urls_with_other_spellings_of_a_dot_segment_are_refused(db, settings, url):
    settings.DEBUG = False
    with pytest.raises(ValidationError) as caught:
        ALMAccount(name="Jira", base_url=url, client_id="cid").full_clean()
    assert "'.' or '..'" in " ".join(caught.value.message_dict["base_url"])


@pytest.mark.parametrize("url", ["https://[2001:db8::1]:8443/jira", "https://jira.example.com:8443/jira/sub.path",
                                 "https://JIRA.example.com", "https://10.0.0.5:8080"])
def test_base_urls_with_ipv6_ports_and_context_paths_are_still_accepted(db, settings, url):
    settings.DEBUG = False
    ALMAccount(name="Jira", base_url=url, client_id="cid").full_clean()


# --------------------------------------------------------------------------
# Review of item 7: invisible characters. Account names are unique, but "Pay\u200bments" is shown exactly like
# "Payments": a second account that people cannot tell from the first on My ALM Credentials.
# --------------------------------------------------------------------------

def _add_account(admin_client, name):
    callback_id = admin_client.get(reverse("admin:alm_accounts_almaccount_add")).context["adminform"].form[
        "callback_url"].value()
    return admin_client.post(reverse("admin:alm_accounts_almaccount_add"),
                             add_form_data(callback_id, name=name, client_secret=CLIENT_SECRET))


@pytest.mark.parametrize("name", ["Jira - Pay\u200bments", "Jira - Pay\u200dments", "Jira - Pay\u200cments",
                                  "\u200dJira - Payments", "Jira - Payments\u2060", "\ufeffJira - Payments",
                                  "Jira - Pay\u00adments", "Jira - Payments\U000e0041", "Jira - Payments \u3164"])
def test_account_names_with_invisible_characters_are_refused(admin_client, name):
    response = _add_account(admin_client, name)
    assert response.status_code == 200
    assert "nor invisible characters (such as U+200B)" in response.content.decode()
    assert not ALMAccount.objects.exists()


@pytest.mark.parametrize("name", ["Jira - حساب\u200cها", "Jira - क्\u200dष", "Jira - Team \U0001f469\u200d\U0001f4bb",
                                  "Jira – Zahlungen (שירות) 北京", "Jira - 결제"])
def test_names_that_need_joiners_in_their_script_are_kept(admin_client, name):
    response = _add_account(admin_client, name)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ALMAccount.objects.get().name == name


# --------------------------------------------------------------------------
# Review of item 7: the names Jira gives. Any Jira user chooses their own display name; it is shown in the
# admin's messages, lists and audit trail ("Connected to Jira as ..."). U+202E there turns the rest of the sentence
# around; U+2028 starts a new line in a log or a mail.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("display", ["Mallory\u202e)NIMDA(", "Mallory\u2028Connected to Jira as Jira Admin",
                                     "Mallory\u2066 \u200f"])
def test_a_jira_display_name_cannot_turn_text_around_or_start_a_line(admin_client, account, mocked_jira, display):
    start = admin_client.post(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]),
                              change_form_data(account, _get_auth_token="Get Auth Token"))
    state = query_of(start["Location"])["state"]
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    mocked_jira.get(MYSELF_URL, json={"name": "mallory", "key": "JIRAUSER10300", "displayName": display})
    admin_client.get(urlsplit(account.callback_url).path, {"code": "CODE-abc", "state": state})
    account.refresh_from_db()
    shown = [account.connected_as_display_name, account.connected_as, account.events.first().message]
    assert all(text.startswith("Mallory") or "Mallory" in text for text in shown), shown
    assert not [text for text in shown if any(ch in text for ch in "\u202e\u2028\u2066\u200f")], shown
