"""Security review (issue 18), what the first fixes left: a person's grant that is not their own Jira user.

- Existing data: a person whose credential already holds the Jira user the account's own connection acts as
  (stored before connecting as it was refused) must not act as the account's administrator through it:
  jira_request (and Test) refuse it, say why and what to do, and My ALM Credentials shows it as needing
  re-authorization. The check costs no query: the account comes with the credential.
- Test connection learns the Jira user a grant acts as now (Jira users can be renamed). A person's grant that turns
  out to be the account's own Jira user, or another person's, is refused as at connect: the name is not recorded,
  and the credential needs re-authorization until the person reconnects as themselves. The account's Test finding
  a person's Jira user warns, and that person's credential is not used meanwhile.
- Django deactivation: Jira's refusal of a person's grant is kept when the person is made inactive (the tokens are
  still revoked and wiped), so reactivating them does not let them act as the account; while inactive they are
  not counted as "needs re-authorization" in the status at a glance (nobody has to act on it).

Each for Jira Data Center and Jira Cloud where the two differ (Cloud names users by their Atlassian account ID).
Jira is mocked with `responses`; the pages are driven as a browser would.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.health import DeploymentCollector
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from alm_accounts.status import status_summary
from tests.conftest import (
    ACCOUNTS_OWN,
    ALICE,
    BOB,
    CLOUD_MYSELF_URL,
    CLOUD_SERVER_INFO_URL,
    CLOUD_TOKEN_URL,
    MYSELF_URL,
    REVOKE_URL,
    SERVER_INFO_URL,
    TOKEN_URL,
    my_row,
    page_messages,
    staff_user,
)
from tests.factories import CredentialFactory, identity

Status = ALMAccount.Status
MY_PAGE = reverse("my_alm_credentials")



def myself_path(account: ALMAccount) -> str:
    return "/rest/api/3/myself" if account.is_cloud else "/rest/api/2/myself"


def act_for(account: ALMAccount, user: User):
    return services.jira_request(account=account, method="GET", path=myself_path(account), user=user)


def jira_answers_myself(mocked, account: ALMAccount, me: dict) -> tuple:
    """Jira's answers to Test: who the token's user is, and the server (returned)."""
    if account.is_cloud:
        return (mocked.get(CLOUD_MYSELF_URL, json=me),
                mocked.get(CLOUD_SERVER_INFO_URL, json={"version": "1001.0.0", "baseUrl": account.base_url}))
    return (mocked.get(MYSELF_URL, json=me),
            mocked.get(SERVER_INFO_URL, json={"version": "9.12.2", "baseUrl": account.base_url}))



def click_test(browser: Client, account: ALMAccount) -> list[str]:
    response = browser.post(reverse("my_alm_credentials_test", args=[account.pk]))
    assert response.status_code == 302
    return page_messages(browser.get(MY_PAGE).content.decode())


# --------------------------------------------------------------------------
# Existing data: a person's credential holding the account's own Jira user
# --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["account", "refuse"])
def test_a_person_already_holding_the_accounts_jira_user_does_not_act_as_the_account(kind, either, alice,
                                                                                    mocked_jira, policy):
    either.unconnected_users = policy
    either.save(update_fields=["unconnected_users"])
    # Stored before a person's consent as the account's identity was refused (a browser signed in as the admin).
    CredentialFactory(account=either, user=alice, me=ACCOUNTS_OWN[kind], tokens="ALICE-1")

    with pytest.raises(services.NoJiraIdentity) as refused:
        act_for(either, alice)

    assert len(mocked_jira.calls) == 0
    assert refused.value.sent is False and refused.value.identity == "alice"
    message = str(refused.value)
    assert message.startswith(f"alice's own Jira connection on {either.name} is Jira user Jira Admin, the one "
                              "the account's own connection acts as")
    assert "Nothing was sent" in message and "the account's connection is not used instead" in message
    assert f"Reconnect under My ALM Credentials ({either.name}) signed in to Jira as yourself" in message
    # A person with their own Jira user still acts as themselves.
    bob = staff_user("bob")
    CredentialFactory(account=either, user=bob, me=BOB[kind], tokens="BOB-1")
    assert services.jira_identity(account=either, user=bob).grant.connected_as_name == identity(BOB[kind])


def test_no_token_is_handed_out_for_such_a_credential(connected_account, alice, mocked_jira):
    mine = CredentialFactory(account=connected_account, user=alice, me=ACCOUNTS_OWN["dc"], tokens="ALICE-1",
                             token_expires_at=timezone.now())

    with pytest.raises(services.ServiceError) as refused:
        services.valid_access_token(account=ALMCredential.objects.select_related("account", "user").get(pk=mine.pk))

    assert "is Jira user Jira Admin, the one the account's own connection acts as: it is not used" in str(refused.value)
    assert "ALICE-1" not in str(refused.value)
    assert len(mocked_jira.calls) == 0  # not even refreshed


def test_finding_whom_a_person_acts_as_stays_one_query(connected_account, alice, django_assert_num_queries):
    """The check against the account's own Jira user uses the account read with the credential."""
    CredentialFactory(account=connected_account, user=alice, me=ALICE["dc"], tokens="ALICE-1")
    with django_assert_num_queries(1):
        assert services.jira_identity(account=connected_account, user=alice).is_own_credential


def test_my_alm_credentials_says_such_a_connection_is_not_used_and_test_sends_nothing(connected_account, alice,
                                                                                    alice_client, mocked_jira):
    CredentialFactory(account=connected_account, user=alice, me=ACCOUNTS_OWN["dc"], tokens="ALICE-1")

    row = my_row(alice_client.get(MY_PAGE).content.decode(), connected_account)

    assert "Needs re-authorization" in row and "Reconnect" in row and "Connected as" not in row
    assert "This connection is Jira user Jira Admin, the one the account's own connection acts as" in row
    assert "Nothing is done in Jira for you until you reconnect as yourself" in row
    (message,) = click_test(alice_client, connected_account)
    assert message.startswith(f"{connected_account.name}: Test failed: alice's own Jira connection on "
                              f"{connected_account.name} is Jira user Jira Admin")
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Test connection: a renamed Jira user is checked as at connect, under the account's lock
# --------------------------------------------------------------------------


def test_a_persons_test_finding_the_accounts_jira_user_is_refused(kind, either, alice, alice_client, mocked_jira):
    mine = CredentialFactory(account=either, user=alice, me=ALICE[kind], tokens="ALICE-1")
    jira_answers_myself(mocked_jira, either, ACCOUNTS_OWN[kind])  # the token's Jira user is the admin's now

    (message,) = click_test(alice_client, either)

    assert message.startswith(f"{either.name}: Test failed: Jira says this connection now acts as Jira Admin.")
    assert (f"That is the Jira user {either.name}'s own connection acts as, so this connection is not used: through "
            "it the person would act as the account's administrator.") in message
    assert "Reconnect under My ALM Credentials signed in to Jira as yourself" in message
    mine.refresh_from_db()
    assert mine.status == Status.NEEDS_REAUTHORIZATION
    assert (mine.connected_as_name, mine.connected_as_display_name) == (identity(ALICE[kind]), "Alice Jones")
    mocked_jira.calls.reset()
    with pytest.raises(services.NoJiraIdentity) as refused:
        act_for(either, alice)
    assert "Jira says this connection now acts as Jira Admin" in str(refused.value)
    assert len(mocked_jira.calls) == 0
    row = my_row(alice_client.get(MY_PAGE).content.decode(), either)
    assert "Needs re-authorization" in row and "Jira says this connection now acts as Jira Admin" in row
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.TEST_CONNECTION)
    assert (event.outcome, event.grant_owner) == (AuthEvent.Outcome.FAILED, "alice")


def test_a_persons_test_finding_another_persons_jira_user_is_refused(kind, either, alice, alice_client,
                                                                    mocked_jira):
    mine = CredentialFactory(account=either, user=alice, me=ALICE[kind], tokens="ALICE-1")
    bob = staff_user("bob")
    CredentialFactory(account=either, user=bob, me=BOB[kind], tokens="BOB-1")
    jira_answers_myself(mocked_jira, either, BOB[kind])

    (message,) = click_test(alice_client, either)

    assert message.startswith(f"{either.name}: Test failed: Jira says this connection now acts as Bob Smith.")
    assert f"That Jira user is already connected to {either.name} by bob, so this connection is not used." in message
    mine.refresh_from_db()
    assert mine.status == Status.NEEDS_REAUTHORIZATION and mine.connected_as_name == identity(ALICE[kind])
    with pytest.raises(services.NoJiraIdentity):
        act_for(either, alice)
    # bob, who holds that Jira user, keeps acting as it.
    assert services.jira_identity(account=either, user=bob).grant.connected_as_name == identity(BOB[kind])


def test_a_connection_test_refused_stays_refused_after_disconnect(connected_account, alice, alice_client,
                                                                 mocked_jira):
    CredentialFactory(account=connected_account, user=alice, me=ALICE["dc"], tokens="ALICE-1")
    jira_answers_myself(mocked_jira, connected_account, ACCOUNTS_OWN["dc"])
    click_test(alice_client, connected_account)
    mocked_jira.post(REVOKE_URL, status=200)

    response = alice_client.post(reverse("my_alm_credentials_disconnect", args=[connected_account.pk]))

    assert response.status_code == 302
    (message,) = page_messages(alice_client.get(MY_PAGE).content.decode())
    assert message.startswith(f"{connected_account.name}: Disconnected: your tokens were deleted here and revoked")
    assert ("Your connection acted as a Jira user that is not yours, so until you reconnect nothing is done in Jira "
            "for you") in message
    mocked_jira.calls.reset()
    with pytest.raises(services.NoJiraIdentity) as refused:
        act_for(connected_account, alice)
    assert "is not used: Jira says this connection now acts as Jira Admin" in str(refused.value)
    assert len(mocked_jira.calls) == 0


def test_a_persons_test_recording_a_rename_nobody_holds_still_works(connected_account, alice, alice_client,
                                                                   mocked_jira):
    mine = CredentialFactory(account=connected_account, user=alice, me=ALICE["dc"], tokens="ALICE-1")
    jira_answers_myself(mocked_jira, connected_account, {"name": "alice.jones", "displayName": "Alice Jones"})

    (message,) = click_test(alice_client, connected_account)

    assert message == f"{connected_account.name}: Connected to Jira 9.12.2 as Alice Jones."
    mine.refresh_from_db()
    assert (mine.status, mine.connected_as_name) == (Status.CONNECTED, "alice.jones")


def test_the_accounts_test_finding_a_persons_jira_user_warns_and_that_person_is_not_used(
        kind, either, alice, admin_client, mocked_jira):
    CredentialFactory(account=either, user=alice, me=ALICE[kind], tokens="ALICE-1")
    jira_answers_myself(mocked_jira, either, ALICE[kind])  # the account's token now belongs to alice's Jira user

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_test_connection", args=[either.pk]))

    assert response.status_code == 302
    (message,) = page_messages(admin_client.get(response["Location"]).content.decode())
    assert "as Alice Jones." in message
    assert "Warning: Alice Jones is also the Jira user of alice's own connection (My ALM Credentials)" in message
    either.refresh_from_db()
    assert either.connected_as_name == identity(ALICE[kind])
    mocked_jira.calls.reset()
    with pytest.raises(services.NoJiraIdentity):  # alice would act as the account's own identity
        act_for(either, alice)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Django deactivation keeps Jira's refusal
# --------------------------------------------------------------------------


def jira_refuses_alices_grant(mocked, account: ALMAccount, alice: User, kind: str) -> ALMCredential:
    mine = CredentialFactory(account=account, user=alice, me=ALICE[kind], tokens="ALICE-1",
                             token_expires_at=timezone.now())
    if kind == "dc":
        mocked.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Refresh token is "
                                                                                                "invalid"})
    else:
        mocked.post(CLOUD_TOKEN_URL, status=403, json={"error": "invalid_grant"})
    result = services.refresh_grant(grant=services.GrantRef("user", mine.pk), actor="refresher")
    assert result.outcome is services.RefreshOutcome.NEEDS_REAUTHORIZATION
    mocked.calls.reset()
    if kind == "dc":
        mocked.post(REVOKE_URL, status=200)
    return mine


def test_jiras_refusal_survives_deactivation_and_reactivation(kind, either, alice, mocked_jira,
                                                             django_capture_on_commit_callbacks):
    mine = jira_refuses_alices_grant(mocked_jira, either, alice, kind)
    for answer in jira_answers_myself(mocked_jira, either, ACCOUNTS_OWN[kind]):  # as the account, were it used
        mocked_jira.must_not_be_asked(answer)  # for her: it is not

    with django_capture_on_commit_callbacks(execute=True):
        alice.is_active = False
        alice.save()
    mine.refresh_from_db()
    assert (mine.access_token, mine.refresh_token, mine.status) == (None, None, Status.NEEDS_REAUTHORIZATION)
    assert status_summary().counts["needs_reauthorization"].people == 0  # nobody has to act on it now
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.CONNECTION_ENDED)
    assert "It needed re-authorization, and stays so until they reconnect." in event.message

    alice.is_active = True
    alice.save()
    sent = len(mocked_jira.calls)

    with pytest.raises(services.NoJiraIdentity) as refused:
        act_for(either, alice)
    assert "needs re-authorization: Jira no longer accepts it" in str(refused.value)
    assert len(mocked_jira.calls) == sent
    assert status_summary().counts["needs_reauthorization"].people == 1


def test_an_inactive_persons_refused_credential_is_not_counted_nor_listed_as_needing_reauthorization(
        admin_client, connected_account, alice):
    bob = staff_user("bob")
    for person, me in ((alice, ALICE["dc"]), (bob, BOB["dc"])):
        CredentialFactory(account=connected_account, user=person, me=me, tokens=person.username,
                          status=Status.NEEDS_REAUTHORIZATION)
    User.objects.filter(pk=alice.pk).update(is_active=False)

    assert status_summary().counts["needs_reauthorization"].people == 1
    url = reverse("admin:alm_accounts_almcredential_changelist") + "?health=needs_reauthorization"
    listed = admin_client.get(url).context["cl"].result_list
    assert [str(row) for row in listed] == [f"bob on {connected_account.name}"]
    # /metrics counts health as the list does.
    (health,) = [family for family in DeploymentCollector(now=timezone.now()).collect()
                 if family.name == "kendis_grants_health"]
    assert {(s.labels["kind"], s.labels["health"]): s.value for s in health.samples}[
        ("user", "needs_reauthorization")] == 1
