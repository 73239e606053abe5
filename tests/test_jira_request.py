"""Issue 11 - calling Jira as a person: jira_request, iter_jira_pages and `manage.py jira_call`.

Unit-level with `responses` (Jira's answers scripted per call); where two people must really reach Jira as
two identities, or a person's grant must really rotate, the fake Jira on a real socket (tests/doubles/fake_jira.py).
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.contrib.auth.models import User
from django.utils import timezone

from alm_accounts import jira, services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from alm_accounts.services import jira_calls
from tests.conftest import ACCESS_TOKEN, CLIENT_SECRET, JIRA, MYSELF_URL, REFRESH_TOKEN, TOKEN_URL, form_of
from tests.factories import CredentialFactory, UserFactory

Status = ALMAccount.Status
ISSUE_URL = f"{JIRA}/rest/api/2/issue"
SEARCH_URL = f"{JIRA}/rest/api/2/search"
BOARDS_URL = f"{JIRA}/rest/agile/1.0/board"
ACCOUNT = "Jira - Core Banking"  # the conftest account
ALICE_AT, ALICE_RT = "ALICE-ACCESS-1-5f1e", "ALICE-REFRESH-1-9c0d"
BOB_AT, BOB_RT = "BOB-ACCESS-1-7a2b", "BOB-REFRESH-1-3e4f"
SECRETS = (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, ALICE_AT, ALICE_RT, BOB_AT, BOB_RT, "ACCESS", "REFRESH")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture
def alice_credential(connected_account, alice):
    return CredentialFactory(account=connected_account, user=alice, access_token=ALICE_AT, refresh_token=ALICE_RT,
                             jira_user="ajones", connected_as_display_name="Alice Jones")


@pytest.fixture
def waits(monkeypatch):
    """The pauses jira_request takes between attempts (recorded instead of slept)."""
    recorded: list[float] = []
    monkeypatch.setattr(jira_calls, "sleep", recorded.append)
    return recorded


def bearer_of(call) -> str:
    return call.request.headers["Authorization"]


def refreshed_answer(prefix: str, n: int) -> dict:
    return {"access_token": f"{prefix}-ACCESS-{n}-xx", "refresh_token": f"{prefix}-REFRESH-{n}-xx",
            "token_type": "bearer", "expires_in": 7200, "scope": "ADMIN"}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {text!r}"


def set_policy(account: ALMAccount, policy: str) -> ALMAccount:
    account.unconnected_users = policy
    account.save(update_fields=["unconnected_users"])
    return account


# --------------------------------------------------------------------------
# Two people, two Jira identities (a real socket)
# --------------------------------------------------------------------------


@pytest.fixture
def jira_with_people(fake_jira, db):
    """An account on the fake Jira, connected as jadmin, and alice and bob each connected as their own Jira user."""
    account = ALMAccount.objects.create(name=ACCOUNT, base_url=fake_jira.base_url, client_id="client-id-123",
                                        client_secret=CLIENT_SECRET)

    def grant(key, user, display):
        return fake_jira.add_grant(key, redirect_uri=account.callback_url, client_id=account.client_id,
                                   client_secret=CLIENT_SECRET, user=user, display_name=display)

    account.access_token, account.refresh_token = grant("admin", "jadmin", "Jira Admin")
    account.token_expires_at = timezone.now() + timedelta(hours=1)
    account.status = Status.CONNECTED
    account.connected_as_name, account.connected_as_display_name = "jadmin", "Jira Admin"
    account.save()
    people = {}
    for username, jira_user, display in (("alice", "ajones", "Alice Jones"), ("bob", "bkeller", "Bob Keller")):
        user = UserFactory(username=username)
        access, refresh = grant(username, jira_user, display)
        CredentialFactory(account=account, user=user, access_token=access, refresh_token=refresh, jira_user=jira_user,
                          connected_as_display_name=display)
        people[username] = user
    return account, people


def test_two_people_on_one_account_act_in_jira_as_their_own_jira_users(fake_jira, jira_with_people):
    account, people = jira_with_people

    as_alice = services.jira_request(account=account, method="GET", path=jira.MYSELF_PATH, user=people["alice"])
    as_bob = services.jira_request(account=account, method="GET", path=jira.MYSELF_PATH, user=people["bob"])
    as_account = services.jira_request(account=account, method="GET", path=jira.MYSELF_PATH)

    assert (as_alice["name"], as_alice["displayName"]) == ("ajones", "Alice Jones")
    assert (as_bob["name"], as_bob["displayName"]) == ("bkeller", "Bob Keller")
    assert as_account["name"] == "jadmin"
    # Each person's own Bearer token reached Jira, and no session cookie carried one identity into another call.
    sent = [call.headers["Authorization"] for call in fake_jira.calls_to("/jira" + jira.MYSELF_PATH)]
    assert sent == ["Bearer AT-alice-0", "Bearer AT-bob-0", "Bearer AT-admin-0"]
    assert fake_jira.identity_mismatches == []


def test_a_401_refreshes_the_persons_own_grant_with_their_refresh_token_and_retries(fake_jira, jira_with_people,
                                                                                   caplog):
    """Alice's access token was rotated away (e.g. refreshed by another process whose write we did not see):
    Jira answers 401, her own refresh token is used once, and the call is retried as her."""
    caplog.set_level(logging.INFO, logger="alm_accounts.services")
    account, people = jira_with_people
    ALMCredential.objects.filter(user=people["alice"]).update(access_token="AT-alice-rotated-away")

    me = services.jira_request(account=account, method="GET", path=jira.MYSELF_PATH, user=people["alice"],
                               actor="kendis-sync")

    assert me["name"] == "ajones"
    token_calls = fake_jira.calls_to("/jira/rest/oauth2/latest/token")
    assert [call.form["refresh_token"] for call in token_calls] == ["RT-alice-0"]
    assert dict(fake_jira.refreshes) == {"alice": 1}  # not the account's grant, not bob's
    stored = ALMCredential.objects.get(user=people["alice"])
    assert (stored.access_token, stored.refresh_token) == ("AT-alice-1", "RT-alice-1")
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token) == ("AT-admin-0", "RT-admin-0")
    # A routine refresh: counted on her grant and logged (whose, by whom), not in the audit trail.
    assert (stored.refresh_count, account.refresh_count) == (1, 0)
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.REFRESHED).exists()
    (line,) = [r for r in caplog.records if r.getMessage().startswith("Token refresh of ")]
    assert (line.levelname, line.grant_kind, line.grant_id, line.actor, line.outcome) == (
        "INFO", "user", stored.pk, "kendis-sync", "refreshed")
    assert "(alice)" in line.getMessage()


# --------------------------------------------------------------------------
# Who acts: a person's credential, the policy, inactive people, dead grants
# --------------------------------------------------------------------------


def test_a_connected_person_acts_with_their_own_token(connected_account, alice_credential, alice, mocked_jira):
    mocked_jira.get(MYSELF_URL, json={"name": "ajones"})

    assert services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH,
                                 user=alice)["name"] == "ajones"
    assert bearer_of(mocked_jira.calls[0]) == f"Bearer {ALICE_AT}"


def test_a_persons_token_expiring_within_a_minute_is_refreshed_first_with_their_refresh_token(
        connected_account, alice, mocked_jira):
    CredentialFactory(account=connected_account, user=alice, access_token=ALICE_AT, refresh_token=ALICE_RT,
                      jira_user="ajones", connected_as_display_name="Alice Jones", expires_in=timedelta(seconds=30))
    mocked_jira.post(TOKEN_URL, json=refreshed_answer("ALICE", 2))
    mocked_jira.get(MYSELF_URL, json={"name": "ajones"})

    services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)

    assert form_of(mocked_jira.calls[0])["refresh_token"] == ALICE_RT
    assert bearer_of(mocked_jira.calls[1]) == "Bearer ALICE-ACCESS-2-xx"
    assert ALMAccount.objects.get(pk=connected_account.pk).refresh_token == REFRESH_TOKEN  # the account's untouched


@pytest.mark.parametrize("state", ["no credential", "disconnected credential"])
def test_policy_account_a_person_without_their_own_connection_acts_as_the_account(
        connected_account, alice, mocked_jira, state):
    if state == "disconnected credential":
        ALMCredential.objects.create(account=connected_account, user=alice, status=Status.NOT_CONNECTED)
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/CB-1", status=404, json={"errorMessages": ["Issue Does Not Exist"]})

    me = services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)
    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method="GET", path="/rest/api/2/issue/CB-1", user=alice)

    assert me["name"] == "jadmin"
    assert [bearer_of(call) for call in mocked_jira.calls] == [f"Bearer {ACCESS_TOKEN}"] * 2
    # The fallback is said wherever it matters: who acted, and why not alice herself.
    assert str(failed.value) == (
        "GET /rest/api/2/issue/CB-1 on Jira - Core Banking, as the account's connection (Jira Admin; alice has not "
        "connected their own Jira account), failed: Jira answered HTTP 404 (Issue Does Not Exist)")
    assert services.jira_identity(account=connected_account, user=alice).is_own_credential is False


@pytest.mark.parametrize("state", ["no credential", "disconnected credential"])
def test_policy_refuse_a_person_without_their_own_connection_is_told_to_connect(
        connected_account, alice, mocked_jira, state):
    set_policy(connected_account, ALMAccount.UnconnectedUsers.REFUSE)
    if state == "disconnected credential":
        ALMCredential.objects.create(account=connected_account, user=alice, status=Status.NOT_CONNECTED)

    with pytest.raises(services.NoJiraIdentity) as refused:
        services.jira_request(account=connected_account, method="POST", path="/rest/api/2/issue", user=alice,
                              json={"fields": {}})

    assert "Connect your Jira account under My ALM Credentials (Jira - Core Banking)" in str(refused.value)
    assert "alice has not connected" in str(refused.value)
    assert isinstance(refused.value, services.ServiceError) and refused.value.sent is False
    assert len(mocked_jira.calls) == 0


def test_policy_refuse_still_lets_the_product_act_as_the_account_itself(connected_account, mocked_jira):
    """The policy is about people; a call that names nobody (user=None) is the account's own."""
    set_policy(connected_account, ALMAccount.UnconnectedUsers.REFUSE)
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})

    assert services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)["name"] == "jadmin"


@pytest.mark.parametrize("policy", ["account", "refuse"])
@pytest.mark.parametrize("connected", [True, False], ids=["own credential", "no credential"])
def test_an_inactive_person_is_refused_never_using_their_credential_nor_the_accounts(
        connected_account, mocked_jira, policy, connected):
    set_policy(connected_account, policy)
    carol = UserFactory(username="carol", is_active=False)
    if connected:
        CredentialFactory(account=connected_account, user=carol, access_token=ALICE_AT, refresh_token=ALICE_RT,
                          jira_user="cmiller", connected_as_display_name="Carol Miller")

    with pytest.raises(services.NoJiraIdentity) as refused:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=carol)

    assert str(refused.value).startswith("carol is inactive: nothing is done in Jira on their behalf")
    assert "they do not act as the account's connection either" in str(refused.value)
    assert len(mocked_jira.calls) == 0


@pytest.mark.parametrize("policy", ["account", "refuse"])
def test_a_credential_needing_reauthorization_is_refused_whatever_the_policy(
        connected_account, alice, mocked_jira, policy):
    """Jira stopped accepting alice's grant (e.g. her Jira user was deactivated): the product does not go on
    acting for her under the admin's name; she is told to reconnect, and nothing reaches Jira."""
    set_policy(connected_account, policy)
    CredentialFactory(account=connected_account, user=alice, access_token=ALICE_AT, refresh_token=ALICE_RT,
                      jira_user="ajones", connected_as_display_name="Alice Jones", status=Status.NEEDS_REAUTHORIZATION)

    with pytest.raises(services.NoJiraIdentity) as refused:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)

    message = str(refused.value)
    assert message.startswith("alice's own Jira connection on Jira - Core Banking (Jira user Alice Jones) needs "
                              "re-authorization")
    assert "Reconnect under My ALM Credentials (Jira - Core Banking)" in message
    assert "the account's connection is not used instead" in message
    assert len(mocked_jira.calls) == 0


def test_a_401_then_a_dead_grant_names_the_person_and_leaves_the_account_alone(
        connected_account, alice_credential, alice, mocked_jira):
    mocked_jira.get(MYSELF_URL, status=401, json={"errorMessages": ["You are not authenticated."]})
    mocked_jira.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "User is inactive"})

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)

    message = str(failed.value)
    assert message.startswith("GET /rest/api/2/myself on Jira - Core Banking, as Jira user Alice Jones (alice's own "
                              "connection), failed: Jira refused the access token (HTTP 401) and it could not be "
                              "refreshed")
    assert "My ALM Credentials" in message
    assert failed.value.status == 401
    assert form_of(mocked_jira.calls[1])["refresh_token"] == ALICE_RT
    assert ALMCredential.objects.get(pk=alice_credential.pk).status == Status.NEEDS_REAUTHORIZATION
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert (account.status, account.refresh_token) == (Status.CONNECTED, REFRESH_TOKEN)
    assert_no_secret(message)


def test_a_second_401_after_the_refresh_is_an_error_and_refreshes_only_once(
        connected_account, alice_credential, alice, mocked_jira):
    mocked_jira.get(MYSELF_URL, status=401, json={})
    mocked_jira.post(TOKEN_URL, json=refreshed_answer("ALICE", 2))

    with pytest.raises(services.JiraRequestError, match=r"HTTP 401\) again, right after it was refreshed; "
                                                        r"reconnect under My ALM Credentials") as failed:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)

    assert [call.request.method for call in mocked_jira.calls] == ["GET", "POST", "GET"]
    assert bearer_of(mocked_jira.calls[2]) == "Bearer ALICE-ACCESS-2-xx"
    assert failed.value.status == 401
    assert_no_secret(str(failed.value))


def test_errors_name_the_identity_and_carry_jiras_status_and_messages_never_a_secret(
        connected_account, alice_credential, alice, mocked_jira):
    errors = {"errorMessages": ["Field 'summary' is required"], "errors": {"project": "project is required"}}
    mocked_jira.post(ISSUE_URL, status=400, json=errors)
    mocked_jira.post(ISSUE_URL, status=403, json={"errorMessages": ["You cannot create issues in CB"]})

    with pytest.raises(services.JiraRequestError) as as_alice:
        services.jira_request(account=connected_account, method="POST", path="/rest/api/2/issue", user=alice,
                              json={"fields": {}})
    with pytest.raises(services.JiraRequestError) as as_account:
        services.jira_request(account=connected_account, method="POST", path="/rest/api/2/issue?x=1",
                              json={"fields": {}})

    assert str(as_alice.value) == (
        "POST /rest/api/2/issue on Jira - Core Banking, as Jira user Alice Jones (alice's own connection), failed: "
        "Jira answered HTTP 400 (Field 'summary' is required; project: project is required)")
    assert (as_alice.value.status, as_alice.value.messages) == (
        400, ("Field 'summary' is required", "project: project is required"))
    assert str(as_account.value) == (
        "POST /rest/api/2/issue on Jira - Core Banking, as the account's connection (Jira Admin), failed: "
        "Jira answered HTTP 403 (You cannot create issues in CB)")
    assert as_account.value.identity == "as the account's connection (Jira Admin)"
    for error in (as_alice.value, as_account.value):
        assert isinstance(error, services.ServiceError)
        assert_no_secret(str(error) + repr(error.args))


def test_an_unusable_token_is_an_error_naming_the_identity_and_nothing_is_sent(connected_account, alice, mocked_jira):
    CredentialFactory(account=connected_account, user=alice, access_token=ALICE_AT, refresh_token=ALICE_RT,
                      jira_user="ajones", connected_as_display_name="Alice Jones", expires_in=timedelta(seconds=-60))
    mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client"})

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH, user=alice)

    assert "as Jira user Alice Jones (alice's own connection), failed: no usable access token" in str(failed.value)
    assert failed.value.sent is False
    assert [call.request.url for call in mocked_jira.calls] == [TOKEN_URL]


def test_grant_request_uses_that_grant_whatever_the_policy_and_refreshes_that_grant_on_401(
        connected_account, alice_credential, mocked_jira):
    """For a screen about one grant (Test on a person's own connection): that grant, its own refresh token."""
    set_policy(connected_account, ALMAccount.UnconnectedUsers.REFUSE)
    mocked_jira.get(MYSELF_URL, status=401, json={})
    mocked_jira.get(MYSELF_URL, json={"name": "ajones"})
    mocked_jira.post(TOKEN_URL, json=refreshed_answer("ALICE", 2))

    me = services.grant_request(grant=alice_credential, method="GET", path=jira.MYSELF_PATH)

    assert me == {"name": "ajones"}
    assert [bearer_of(c) for c in mocked_jira.calls if c.request.method == "GET"] == [
        f"Bearer {ALICE_AT}", "Bearer ALICE-ACCESS-2-xx"]
    assert form_of(mocked_jira.calls[1])["refresh_token"] == ALICE_RT
    assert ALMAccount.objects.get(pk=connected_account.pk).refresh_token == REFRESH_TOKEN


def test_grant_request_refuses_an_inactive_persons_credential(connected_account, alice_credential, alice,
                                                              mocked_jira):
    User.objects.filter(pk=alice.pk).update(is_active=False)

    with pytest.raises(services.NoJiraIdentity, match="alice is inactive: their own Jira connection is never used"):
        services.grant_request(grant=ALMCredential.objects.get(pk=alice_credential.pk), method="GET",
                               path=jira.MYSELF_PATH)
    assert len(mocked_jira.calls) == 0


def test_grant_request_on_a_dead_credential_says_to_reconnect(connected_account, alice, mocked_jira):
    dead = CredentialFactory(account=connected_account, user=alice, access_token=ALICE_AT, refresh_token=ALICE_RT,
                             jira_user="ajones", connected_as_display_name="Alice Jones",
                             status=Status.NEEDS_REAUTHORIZATION)

    with pytest.raises(services.JiraRequestError) as failed:
        services.grant_request(grant=dead, method="GET", path=jira.MYSELF_PATH)

    assert "as Jira user Alice Jones (alice's own connection), failed: no usable access token" in str(failed.value)
    assert "For alice: reconnect under My ALM Credentials (Jira - Core Banking)." in str(failed.value)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# The path cannot leave the Jira host
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["@evil.example/rest/api/2/myself", "//evil.example/x", "rest/api/2/myself",
                                  "/rest/api/2/myself#frag", "/rest/api 2", "https://evil.example/x"])
def test_a_path_that_could_leave_jira_is_refused_before_any_token_is_read(
        connected_account, alice_credential, alice, mocked_jira, django_assert_num_queries, path):
    with django_assert_num_queries(0), pytest.raises(services.InvalidJiraPath) as refused:
        services.jira_request(account=connected_account, method="GET", path=path, user=alice)

    assert isinstance(refused.value, jira.InvalidPath) and isinstance(refused.value, services.ServiceError)
    assert "nothing was sent" in str(refused.value)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Retries: 429, 5xx, connection failures
# --------------------------------------------------------------------------


def test_429_waits_as_long_as_jira_asks_then_succeeds(connected_account, mocked_jira, waits):
    mocked_jira.get(MYSELF_URL, status=429, json={}, headers={"Retry-After": "7"})
    mocked_jira.get(MYSELF_URL, status=429, json={}, headers={"Retry-After": "2"})
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})

    assert services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)["name"] == "jadmin"
    assert waits == [7.0, 2.0]


def test_429_is_retried_for_a_post_too_jira_did_nothing(connected_account, alice_credential, alice, mocked_jira,
                                                        waits):
    mocked_jira.post(ISSUE_URL, status=429, json={}, headers={"Retry-After": "3"})
    mocked_jira.post(ISSUE_URL, status=201, json={"key": "CB-7"})

    created = services.jira_request(account=connected_account, method="POST", path="/rest/api/2/issue", user=alice,
                                    json={"fields": {"summary": "x"}})

    assert created == {"key": "CB-7"}
    assert waits == [3.0]
    assert len(mocked_jira.calls) == 2


def test_429_asking_for_more_than_30_seconds_is_not_waited_out(connected_account, mocked_jira, waits):
    mocked_jira.get(MYSELF_URL, status=429, json={"errorMessages": ["Rate limit exceeded"]},
                    headers={"Retry-After": "120"})

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)

    assert waits == []
    assert len(mocked_jira.calls) == 1
    assert (failed.value.status, failed.value.retry_after) == (429, 120.0)
    assert str(failed.value).endswith("failed: Jira answered HTTP 429 (Rate limit exceeded) (Jira asks to wait "
                                      "120 s before trying again, longer than the 30 s this call waits; try again "
                                      "later)")


def test_429_gives_up_after_three_attempts(connected_account, mocked_jira, waits):
    for _ in range(3):  # the last answer would also answer a fourth attempt
        mocked_jira.get(MYSELF_URL, status=429, json={}, headers={"Retry-After": "1"})

    with pytest.raises(services.JiraRequestError, match="gave up after 3 attempts") as failed:
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)

    assert len(mocked_jira.calls) == 3
    assert waits == [1.0, 1.0]
    assert failed.value.attempts == 3


def test_a_wait_never_goes_beyond_the_calls_time_budget(connected_account, mocked_jira, waits):
    mocked_jira.get(MYSELF_URL, status=429, json={}, headers={"Retry-After": "20"})

    with pytest.raises(services.JiraRequestError, match="the call's 10 s budget is spent"):
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH,
                              deadline=jira.Deadline(10))

    assert waits == []
    assert len(mocked_jira.calls) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_5xx_is_retried_with_the_configured_backoff_for_a_get(connected_account, mocked_jira, waits, settings,
                                                              status):
    settings.JIRA_RETRY_BACKOFF = [0.5, 2.0]
    mocked_jira.get(MYSELF_URL, status=status, body="<html>Bad gateway</html>")
    mocked_jira.get(MYSELF_URL, status=status, body="<html>Bad gateway</html>")
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})

    assert services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)["name"] == "jadmin"
    assert waits == [0.5, 2.0]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_5xx_is_not_retried_for_a_write_that_may_have_been_carried_out(
        connected_account, alice_credential, alice, mocked_jira, waits, method):
    mocked_jira.add(method, ISSUE_URL + "/CB-1", status=503, body="<html>Service Unavailable</html>")
    mocked_jira.must_not_be_asked(mocked_jira.add(method, ISSUE_URL + "/CB-1", status=204))  # a (wrong) retry's

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method=method, path="/rest/api/2/issue/CB-1", user=alice,
                              json={"update": {"comment": [{"add": {"body": "Deployed"}}]}})

    assert len(mocked_jira.calls) == 1
    assert waits == []
    assert str(failed.value) == (
        f"{method} /rest/api/2/issue/CB-1 on Jira - Core Banking, as Jira user Alice Jones (alice's own "
        f"connection), failed: Jira answered HTTP 503 (not retried: a {method} that reached Jira may have been "
        "carried out)")


def test_a_post_that_is_a_read_may_be_declared_idempotent(connected_account, mocked_jira, waits):
    mocked_jira.post(SEARCH_URL, status=503, body="")
    mocked_jira.post(SEARCH_URL, json={"issues": [], "total": 0})

    found = services.jira_request(account=connected_account, method="POST", path="/rest/api/2/search",
                                  json={"jql": "project = CB"}, idempotent=True)

    assert found == {"issues": [], "total": 0}
    assert len(mocked_jira.calls) == 2


def test_500_is_jiras_own_answer_and_is_not_retried_even_for_a_get(connected_account, mocked_jira, waits):
    mocked_jira.get(MYSELF_URL, status=500, json={"errorMessages": ["NullPointerException"]})
    mocked_jira.must_not_be_asked(mocked_jira.get(MYSELF_URL, json={"name": "jadmin"}))  # a (wrong) retry's

    with pytest.raises(services.JiraRequestError, match=r"HTTP 500 \(NullPointerException\)$"):
        services.jira_request(account=connected_account, method="GET", path=jira.MYSELF_PATH)

    assert len(mocked_jira.calls) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_connection_never_made_is_retried_for_any_method(connected_account, mocked_jira, waits, method):
    mocked_jira.add(method, ISSUE_URL, body=requests.ConnectTimeout("connect timed out"))
    mocked_jira.add(method, ISSUE_URL, json={"key": "CB-8"})

    assert services.jira_request(account=connected_account, method=method, path="/rest/api/2/issue") == {
        "key": "CB-8"}
    assert len(mocked_jira.calls) == 2
    assert waits == [0.0]


def test_a_connection_never_made_gives_up_after_three_attempts_saying_so(connected_account, mocked_jira, waits):
    for _ in range(3):  # the last answer would also answer a fourth attempt
        mocked_jira.post(ISSUE_URL, body=requests.ConnectTimeout("connect timed out"))

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_account, method="POST", path="/rest/api/2/issue")

    assert len(mocked_jira.calls) == 3
    assert str(failed.value) == (
        "POST /rest/api/2/issue on Jira - Core Banking, as the account's connection (Jira Admin), failed: Jira did "
        "not accept the connection in time (gave up after 3 attempts)")
    assert (failed.value.sent, failed.value.status) == (False, None)


@pytest.mark.parametrize("method, calls", [("GET", 2), ("POST", 1)])
def test_a_connection_broken_mid_answer_is_retried_only_for_a_get(connected_account, mocked_jira, waits, method,
                                                                   calls):
    mocked_jira.add(method, ISSUE_URL, body=requests.ConnectionError("Connection reset by peer"))
    retried = mocked_jira.add(method, ISSUE_URL, json={"key": "CB-9"})
    if method == "POST":
        mocked_jira.must_not_be_asked(retried)  # a POST that may have reached Jira is not sent again

    if method == "GET":
        assert services.jira_request(account=connected_account, method=method, path="/rest/api/2/issue") == {
            "key": "CB-9"}
    else:
        with pytest.raises(services.JiraRequestError, match="broke before it answered .not retried: a POST"):
            services.jira_request(account=connected_account, method=method, path="/rest/api/2/issue")
    assert len(mocked_jira.calls) == calls


def test_an_unknown_method_is_refused_before_anything_is_sent(connected_account, mocked_jira):
    with pytest.raises(services.JiraRequestError, match="'FETCH' is not an HTTP method"):
        services.jira_request(account=connected_account, method="FETCH", path=jira.MYSELF_PATH)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Paged lists
# --------------------------------------------------------------------------


def pages_of(items: list, *, key: str, with_total: bool = False, with_is_last: bool = False, cap: int | None = None):
    """A Jira list resource: answers the page asked for with startAt / maxResults (capped like Jira's)."""

    def answer(request):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        start, size = int(query["startAt"]), int(query["maxResults"])
        size = min(size, cap or size)
        page = {"startAt": start, "maxResults": size, key: items[start:start + size]}
        if with_total:
            page["total"] = len(items)
        if with_is_last:
            page["isLast"] = start + size >= len(items)
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    return answer


def starts_asked(mocked) -> list[int]:
    return [int(parse_qs(urlsplit(call.request.url).query)["startAt"][0])
            for call in mocked.calls]


def test_pages_are_read_until_total_advancing_by_what_jira_sent(connected_account, alice_credential, alice,
                                                                mocked_jira):
    """Search answers "issues" with a total, and caps maxResults: asked for 3 a page, Jira sends 2."""
    issues = [{"key": f"CB-{n}"} for n in range(1, 6)]
    mocked_jira.add_callback(responses.GET, SEARCH_URL, callback=pages_of(issues, key="issues", with_total=True,
                                                                          cap=2))

    found = list(services.iter_jira_pages(account=connected_account, path="/rest/api/2/search", user=alice,
                                          params={"jql": "project = CB"}, items_key="issues", page_size=3))

    assert found == issues
    assert starts_asked(mocked_jira) == [0, 2, 4]
    assert all("jql=project" in call.request.url for call in mocked_jira.calls)
    assert {bearer_of(call) for call in mocked_jira.calls} == {f"Bearer {ALICE_AT}"}


def test_pages_are_read_until_jira_says_is_last(connected_account, mocked_jira):
    boards = [{"id": n} for n in range(5)]
    mocked_jira.add_callback(responses.GET, BOARDS_URL, callback=pages_of(boards, key="values", with_is_last=True))

    found = list(services.iter_jira_pages(account=connected_account, path="/rest/agile/1.0/board", page_size=2))

    assert found == boards
    assert starts_asked(mocked_jira) == [0, 2, 4]


def test_pages_without_total_or_is_last_end_at_an_empty_page(connected_account, mocked_jira):
    values = [{"id": n} for n in range(3)]
    mocked_jira.add_callback(responses.GET, BOARDS_URL, callback=pages_of(values, key="values"))

    found = list(services.iter_jira_pages(account=connected_account, path="/rest/agile/1.0/board", page_size=2))

    assert found == values
    assert starts_asked(mocked_jira) == [0, 2, 3]


def test_a_jira_that_always_says_more_is_read_up_to_the_page_cap(connected_account, mocked_jira):
    """A broken server answering the same page forever (isLast false, no total) cannot keep us reading."""
    for _ in range(5):  # the last answer would also answer a sixth request
        mocked_jira.get(BOARDS_URL, json={"values": [{"id": 1}], "isLast": False})
    read = []

    with pytest.raises(services.JiraRequestError, match="stopped after 5 pages .5 items., Jira still says there are "
                                                        "more"):
        for item in services.iter_jira_pages(account=connected_account, path="/rest/agile/1.0/board", max_pages=5):
            read.append(item)

    assert len(read) == 5
    assert len(mocked_jira.calls) == 5


def test_an_answer_without_the_list_names_what_it_has(connected_account, mocked_jira):
    mocked_jira.get(SEARCH_URL, json={"issues": [], "total": 0, "startAt": 0})

    with pytest.raises(services.JiraRequestError, match="no list 'values' to page through .it has: issues, startAt, "
                                                        "total.") as failed:
        list(services.iter_jira_pages(account=connected_account, path="/rest/api/2/search"))
    assert isinstance(failed.value, services.ServiceError)


# --------------------------------------------------------------------------
# manage.py jira_call
# --------------------------------------------------------------------------


@pytest.fixture
def jira_call(run_command):
    """Run `manage.py jira_call ARGS` in-process, as manage.py does; a Run (exit code, stdout, stderr)."""
    return functools.partial(run_command.of, "jira_call")


def test_jira_call_prints_jiras_json_acting_as_the_person(connected_account, alice_credential, mocked_jira,
                                                          jira_call):
    mocked_jira.get(MYSELF_URL, json={"name": "ajones", "displayName": "Alice Jones"})

    run = jira_call(ACCOUNT, "GET", "/rest/api/2/myself", "--as", "alice")

    assert run.code == 0
    assert json.loads(run.out) == {"name": "ajones", "displayName": "Alice Jones"}
    assert run.out.startswith('{\n  "name"')  # pretty
    assert bearer_of(mocked_jira.calls[0]) == f"Bearer {ALICE_AT}"
    assert "GET /rest/api/2/myself on Jira - Core Banking, as Jira user Alice Jones (alice's own connection): OK" \
        in run.err


def test_jira_call_without_as_acts_as_the_account_and_takes_the_account_by_id(connected_account, mocked_jira,
                                                                              jira_call):
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin"})

    run = jira_call(str(connected_account.pk), "get", "/rest/api/2/myself")

    assert (run.code, json.loads(run.out)) == (0, {"name": "jadmin"})
    assert bearer_of(mocked_jira.calls[0]) == f"Bearer {ACCESS_TOKEN}"
    assert "as the account's connection (Jira Admin): OK" in run.err


def test_jira_call_sends_data_and_params(connected_account, alice_credential, mocked_jira, jira_call):
    mocked_jira.post(ISSUE_URL, status=201, json={"key": "CB-12"})
    body = {"fields": {"project": {"key": "CB"}, "summary": "Café ☕", "issuetype": {"name": "Task"}}}

    run = jira_call(ACCOUNT, "POST", "/rest/api/2/issue", "--as", "alice", "--data", json.dumps(body),
                    "--param", "updateHistory=true", "--param", "expand=names", "--param", "expand=schema")

    assert (run.code, json.loads(run.out)) == (0, {"key": "CB-12"})
    request = mocked_jira.calls[0].request
    assert json.loads(request.body) == body
    assert request.url.endswith("/rest/api/2/issue?updateHistory=true&expand=names&expand=schema")
    assert bearer_of(mocked_jira.calls[0]) == f"Bearer {ALICE_AT}"


def test_jira_call_prints_the_error_naming_the_identity_and_exits_1(connected_account, alice_credential,
                                                                    mocked_jira, jira_call):
    mocked_jira.get(f"{ISSUE_URL}/CB-404", status=404, json={"errorMessages": ["Issue Does Not Exist"]})

    run = jira_call(ACCOUNT, "GET", "/rest/api/2/issue/CB-404", "--as", "alice")

    assert (run.code, run.out) == (1, "")
    assert ("GET /rest/api/2/issue/CB-404 on Jira - Core Banking, as Jira user Alice Jones (alice's own "
            "connection), failed: Jira answered HTTP 404 (Issue Does Not Exist)") in run.err
    assert_no_secret(run.err)


def test_jira_call_for_an_inactive_person_exits_1_saying_so(connected_account, mocked_jira, jira_call):
    UserFactory(username="carol", is_active=False)

    run = jira_call(ACCOUNT, "GET", "/rest/api/2/myself", "--as", "carol")

    assert (run.code, run.out) == (1, "")
    assert "carol is inactive" in run.err
    assert len(mocked_jira.calls) == 0


@pytest.mark.parametrize("args, message", [
    (("Jira - Nowhere", "GET", "/rest/api/2/myself"), "No ALM account named or numbered 'Jira - Nowhere'."),
    (("999", "GET", "/rest/api/2/myself"), "No ALM account named or numbered '999'."),
    ((ACCOUNT, "GET", "/rest/api/2/myself", "--as", "nobody"), "No user 'nobody'."),
    ((ACCOUNT, "POST", "/rest/api/2/issue", "--data", "{fields:"), "--data is not valid JSON"),
    ((ACCOUNT, "GET", "/rest/api/2/search", "--param", "jql"), "--param must be NAME=VALUE (got 'jql')."),
    ((ACCOUNT, "FETCH", "/rest/api/2/myself"), "Unknown method 'FETCH'"),
    ((ACCOUNT, "GET", "@evil.example/rest/api/2/myself"), "nothing was sent"),
])
def test_jira_call_bad_arguments_exit_2_and_send_nothing(connected_account, alice_credential, mocked_jira,
                                                         jira_call, args, message):
    run = jira_call(*args)

    assert (run.code, run.out) == (2, "")
    assert message in run.err
    assert len(mocked_jira.calls) == 0
