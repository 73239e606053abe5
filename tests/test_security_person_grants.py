"""Security review (issue 18), items 1, 3 and 4: whom a person's own Jira grant lets them act as.

- Item 1: Jira refused a person's grant (their Jira user deactivated, the grant revoked in Jira): their own
  Disconnect, or an admin's Revoke, deletes the tokens but not the refusal. Until they reconnect, nothing is done
  in Jira for them, and they never act as the account's own connection instead.
- Item 3: a person's new grant whose first write fails is written again *with* its Jira identity (the rule "one
  person per Jira user" keeps seeing it), also on a first connect; a grant the database never takes is revoked at
  Jira. (The race of two consents as one Jira user is proven on PostgreSQL: test_person_grant_race_pg.py.)
- Item 4: a person cannot bind the Jira identity the account's own connection acts as (a browser still signed in
  to Jira as the administrator), whatever the policy; the account's connection made as a person's Jira user says so.

Each for Jira Data Center and Jira Cloud (where Cloud names users by their Atlassian account ID). Jira is mocked
with `responses`; the pages are driven as a browser would.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from tests.conftest import (
    ACCESSIBLE_RESOURCES_URL,
    ACCOUNTS_OWN,
    ALICE,
    ATLASSIAN_AUTH,
    CLOUD_CALLBACK_PATH,
    CLOUD_MYSELF_URL,
    CLOUD_TOKEN_URL,
    JIRA,
    MYSELF_URL,
    OUR_SITE,
    REVOKE_URL,
    TOKEN_URL,
    change_form_data,
    form_of,
    my_row,
    page_messages,
    query_of,
    staff_user,
    start_cloud_consent,
    token_answer,
)
from tests.factories import CredentialFactory, identity

Status = ALMAccount.Status
MY_PAGE = reverse("my_alm_credentials")
NEW_ACCESS, NEW_REFRESH = "ACCESSTOKEN-2-e1d2c3b4", "REFRESHTOKEN-2-a9b8c7d6"  # what token_answer(2) issues



def signed_in(user: User) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser



def jira_consents(mocked, kind: str, me: dict, *, revokes: bool = True) -> None:
    """Jira's answers to a person's or an admin's consent: the code exchange and who the new grant is; on Data
    Center, the revocation of the grant it replaces (`revokes=False`: there is none, nothing may be revoked)."""
    if kind == "dc":
        mocked.post(TOKEN_URL, json=token_answer(2, scope="WRITE"))
        mocked.get(MYSELF_URL, json=me)
        revoke = mocked.post(REVOKE_URL, status=200)
        if not revokes:
            mocked.must_not_be_asked(revoke)
    else:
        mocked.post(CLOUD_TOKEN_URL, json=token_answer(2, expires_in=3600, scope="read:jira-work offline_access"))
        mocked.get(ACCESSIBLE_RESOURCES_URL, json=[OUR_SITE])
        mocked.get(CLOUD_MYSELF_URL, json=me)


def connect_myself(browser: Client, account: ALMAccount, **callback) -> str:
    """Connect my Jira account, consent, come back: the My ALM Credentials page we land on (its HTML)."""
    response = browser.post(reverse("my_alm_credentials_connect", args=[account.pk]))
    assert response.status_code == 302, response.content[:2000]
    authorize = f"{ATLASSIAN_AUTH}/authorize?" if account.is_cloud else f"{account.base_url}/rest/oauth2/"
    assert response["Location"].startswith(authorize), response["Location"]
    state = query_of(response["Location"])["state"]
    path = CLOUD_CALLBACK_PATH if account.is_cloud else urlsplit(account.callback_url).path
    back = browser.get(path, {"code": "code-from-jira", "state": state, **callback})
    assert back.status_code == 302 and back["Location"] == MY_PAGE, (back.status_code, back.content[:2000])
    return browser.get(MY_PAGE).content.decode()


def revoked(mocked) -> list[str]:
    return [form_of(call)["token"] for call in mocked.calls if call.request.url == REVOKE_URL]


def act_for(account: ALMAccount, user: User):
    path = "/rest/api/3/myself" if account.is_cloud else "/rest/api/2/myself"
    return services.jira_request(account=account, method="GET", path=path, user=user)


# --------------------------------------------------------------------------
# Item 1: Jira's refusal survives Disconnect and Revoke
# --------------------------------------------------------------------------


def jira_refuses_alices_grant(mocked, account: ALMAccount, alice: User, kind: str) -> ALMCredential:
    """Alice's grant due for a refresh, and Jira refusing it (her Jira user was deactivated): as the refresher
    finds out."""
    mine = CredentialFactory(account=account, user=alice, me=ALICE[kind], tokens="ALICE-1",
                             token_expires_at=timezone.now())
    if kind == "dc":
        mocked.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Refresh token is "
                                                                                                "invalid"})
    else:
        mocked.post(CLOUD_TOKEN_URL, status=403, json={"error": "invalid_grant"})
    result = services.refresh_grant(grant=services.GrantRef("user", mine.pk), actor="refresher")
    assert result.outcome is services.RefreshOutcome.NEEDS_REAUTHORIZATION
    with pytest.raises(services.NoJiraIdentity):  # as documented, before anything else happens
        act_for(account, alice)
    mocked.calls.reset()
    if kind == "dc":
        mocked.post(REVOKE_URL, status=200)
    return mine


def test_a_person_jira_refused_stays_refused_after_their_own_disconnect(kind, either, alice, alice_client,
                                                                         mocked_jira):
    mine = jira_refuses_alices_grant(mocked_jira, either, alice, kind)

    response = alice_client.post(reverse("my_alm_credentials_disconnect", args=[either.pk]))

    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.access_token, mine.refresh_token) == (None, None)
    # The tokens are gone, the refusal is not: the product acts neither as alice nor as the account's admin.
    sent = len(mocked_jira.calls)
    with pytest.raises(services.NoJiraIdentity) as refused:
        act_for(either, alice)
    assert "needs re-authorization: Jira no longer accepts it" in str(refused.value)
    assert "Jira user Alice Jones" in str(refused.value)
    assert len(mocked_jira.calls) == sent
    page = alice_client.get(MY_PAGE).content.decode()
    (message,) = page_messages(page)
    assert message.startswith(f"{either.name}: Disconnected: your tokens were deleted here")
    assert (f"Jira had stopped accepting your connection, so until you reconnect nothing is done in Jira for you on "
            f"{either.name}: the account's own connection is not used instead.") in message
    # The page says why, and that the account's connection is not used instead.
    row = my_row(page, either)
    assert "Needs re-authorization" in row and "Reconnect" in row and "Disconnect" not in row
    assert "Jira stopped accepting your connection: nothing is done in Jira for you until you reconnect" in row
    assert "The product acts as the account's connection until you connect." not in row


def test_an_admins_revoke_keeps_jiras_refusal(admin_client, connected_account, alice, mocked_jira):
    mine = jira_refuses_alices_grant(mocked_jira, connected_account, alice, "dc")
    url = reverse("admin:alm_accounts_almaccount_revoke_credential", args=[connected_account.pk, mine.pk])

    response = admin_client.post(url)

    assert response.status_code == 302
    with pytest.raises(services.NoJiraIdentity):
        act_for(connected_account, alice)
    assert revoked(mocked_jira) == ["ALICE-1-refresh", "ALICE-1-access"]
    assert len(mocked_jira.calls) == 2  # the two revocations only
    (message,) = page_messages(admin_client.get(response["Location"]).content.decode())
    assert message.startswith("Disconnected alice: their tokens were deleted here and revoked at Jira.")
    assert "Jira had stopped accepting alice's connection, so until they reconnect nothing is done in Jira" in message
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.DISCONNECTED)
    assert "until they reconnect nothing is done in Jira for them" in event.message


def test_only_a_successful_reconnect_ends_the_refusal(kind, either, alice, alice_client, mocked_jira):
    jira_refuses_alices_grant(mocked_jira, either, alice, kind)
    alice_client.post(reverse("my_alm_credentials_disconnect", args=[either.pk]))

    # A reconnect Jira answers with an error changes nothing.
    page = connect_myself(alice_client, either, error="access_denied")
    assert "Needs re-authorization" in my_row(page, either)
    with pytest.raises(services.NoJiraIdentity):
        act_for(either, alice)

    jira_consents(mocked_jira, kind, ALICE[kind], revokes=False)  # her grant was revoked when she disconnected
    page = connect_myself(alice_client, either)

    assert page_messages(page)[0].startswith("Connected to Jira as Alice Jones")
    identity_now = services.jira_identity(account=either, user=alice)
    assert identity_now.is_own_credential and identity_now.grant.connected_as_name == identity(ALICE[kind])


def test_disconnecting_a_working_connection_still_means_not_connected(connected_account, alice, alice_client,
                                                                       mocked_jira):
    """Only a refusal is kept: a person who disconnects a working grant acts per the account's policy again."""
    CredentialFactory(account=connected_account, user=alice, me=ALICE["dc"], tokens="ALICE-1")
    mocked_jira.post(REVOKE_URL, status=200)

    alice_client.post(reverse("my_alm_credentials_disconnect", args=[connected_account.pk]))

    page = alice_client.get(MY_PAGE).content.decode()
    assert page_messages(page) == [
        f"{connected_account.name}: Disconnected: your tokens were deleted here and revoked at Jira."]
    assert "Not connected" in my_row(page, connected_account)
    assert not services.jira_identity(account=connected_account, user=alice).is_own_credential


# --------------------------------------------------------------------------
# Item 3: a write that is repeated keeps the Jira identity
# --------------------------------------------------------------------------


def fail_credential_writes(monkeypatch, *, times: int) -> list[int]:
    """ALMCredential.save fails with OperationalError (a killed connection) when it stores a new grant."""
    failures: list[int] = []
    real_save = ALMCredential.save

    def save(self, *args, **kwargs):
        if self.access_token and not kwargs.get("update_fields") and len(failures) < times:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ALMCredential, "save", save)
    return failures


# write_again closes the database connection: outside pytest-django's test transaction only.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_time", [True, False], ids=["first connect", "reconnect"])
def test_a_consent_whose_first_write_fails_is_stored_again_with_its_jira_user(kind, either, alice, alice_client,
                                                                               mocked_jira, monkeypatch, first_time):
    if not first_time:
        ALMCredential.objects.create(account=either, user=alice)  # connected once, disconnected since
    jira_consents(mocked_jira, kind, ALICE[kind])
    failures = fail_credential_writes(monkeypatch, times=1)

    page = connect_myself(alice_client, either)

    assert failures == [1]
    assert page_messages(page)[0].startswith("Connected to Jira as Alice Jones")
    mine = ALMCredential.objects.get(account=either, user=alice)
    assert (mine.access_token, mine.refresh_token, mine.status) == (NEW_ACCESS, NEW_REFRESH, Status.CONNECTED)
    assert (mine.connected_as_name, mine.connected_as_display_name) == (identity(ALICE[kind]), "Alice Jones")
    assert AuthEvent.objects.filter(credential=mine, kind=AuthEvent.Kind.CONNECTED).count() == 1

    # So the rule "one person per Jira user" still sees alice's grant: bob, signed in to Jira as alice, is refused.
    bob = signed_in(staff_user("bob"))
    mocked_jira.calls.reset()
    jira_consents(mocked_jira, kind, ALICE[kind])
    page = connect_myself(bob, either)
    (message,) = page_messages(page)
    assert f"The Jira user Alice Jones is already connected to {either.name} by alice." in message
    assert not ALMCredential.objects.filter(user__username="bob", refresh_token__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_time", [True, False], ids=["first connect", "reconnect"])
def test_a_consent_the_database_never_takes_is_revoked_at_jira_and_said_plainly(connected_account, alice,
                                                                                 alice_client, mocked_jira,
                                                                                 monkeypatch, first_time):
    monkeypatch.setattr("alm_accounts.services.grants.STORE_RETRY_PAUSES", (0.0, 0.0, 0.0))
    if not first_time:
        ALMCredential.objects.create(account=connected_account, user=alice)
    jira_consents(mocked_jira, "dc", ALICE["dc"])
    failures = fail_credential_writes(monkeypatch, times=100)

    page = connect_myself(alice_client, connected_account)

    assert len(failures) == 4  # the first write and three more, each on a fresh connection
    (message,) = page_messages(page)
    assert message.startswith("Jira issued the tokens but the database did not accept them: nothing was stored")
    assert "Click Connect my Jira account again." in message
    # Stored nowhere, so not left alive at Jira either.
    assert revoked(mocked_jira) == [NEW_REFRESH, NEW_ACCESS]
    assert not ALMCredential.objects.filter(refresh_token__isnull=False).exists()
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.AUTHORIZATION_FAILED)
    assert (event.grant_owner, event.outcome) == ("alice", AuthEvent.Outcome.FAILED)


# --------------------------------------------------------------------------
# Item 4: the account's own Jira identity is never a person's
# --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["account", "refuse"])
def test_a_person_signed_in_to_jira_as_the_accounts_admin_is_refused(kind, either, alice, alice_client, mocked_jira,
                                                                      policy):
    either.unconnected_users = policy
    either.save(update_fields=["unconnected_users"])
    # The shared browser: still signed in to Jira as the administrator who clicked Get Auth Token.
    jira_consents(mocked_jira, kind, ACCOUNTS_OWN[kind])

    page = connect_myself(alice_client, either)

    (message,) = page_messages(page)
    assert message.startswith(f"The Jira user Jira Admin is the one {either.name}'s own connection acts as")
    assert "Log out of Jira, sign in to Jira as yourself" in message and "Nothing was stored." in message
    assert not ALMCredential.objects.filter(refresh_token__isnull=False).exists()
    assert not ALMCredential.objects.exclude(connected_as_name="").exists()
    assert "Not connected" in my_row(page, either)
    # The refused grant's tokens are revoked (Data Center; Atlassian has no revocation), never the account's own.
    assert revoked(mocked_jira) == ([NEW_REFRESH, NEW_ACCESS] if kind == "dc" else [])
    either.refresh_from_db()
    assert either.is_connected and either.connected_as_name == identity(ACCOUNTS_OWN[kind])
    if policy == "refuse":
        with pytest.raises(services.NoJiraIdentity):
            act_for(either, alice)
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.AUTHORIZATION_FAILED)
    assert event.grant_owner == "alice" and "own connection acts as" in event.message


def test_a_working_connection_is_kept_when_the_reconnect_is_the_accounts_identity(connected_account, alice,
                                                                                   alice_client, mocked_jira):
    mine = CredentialFactory(account=connected_account, user=alice, me=ALICE["dc"], tokens="ALICE-1")
    jira_consents(mocked_jira, "dc", ACCOUNTS_OWN["dc"])

    (message,) = page_messages(connect_myself(alice_client, connected_account))

    assert "own connection acts as" in message and "The existing connection is kept and still works." in message
    mine.refresh_from_db()
    assert (mine.refresh_token, mine.connected_as_name) == ("ALICE-1-refresh", "jalice")


def get_auth_token_page(admin_client, account: ALMAccount, kind: str) -> str:
    """An admin clicks Get Auth Token and consents: the account page they land on (its HTML)."""
    if kind == "cloud":
        state = start_cloud_consent(admin_client, account)["state"]
        back = admin_client.get(CLOUD_CALLBACK_PATH, {"code": "code-from-atlassian", "state": state})
    else:
        change = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
        response = admin_client.post(change, change_form_data(account, _get_auth_token="Get Auth Token"))
        assert response.status_code == 302 and response["Location"].startswith(f"{JIRA}/rest/oauth2/latest/authorize")
        state = query_of(response["Location"])["state"]
        back = admin_client.get(urlsplit(account.callback_url).path, {"code": "code-from-jira", "state": state})
    assert back.status_code == 302, back.content[:2000]
    return admin_client.get(back["Location"]).content.decode()


def test_the_accounts_connection_made_as_a_persons_jira_user_says_so(kind, either, alice, admin_client, mocked_jira):
    CredentialFactory(account=either, user=alice, me=ALICE[kind], tokens="ALICE-1")
    # The admin consented in a browser signed in to Jira as alice; alice's own grant is not revoked.
    jira_consents(mocked_jira, kind, ALICE[kind], revokes=False)

    page = get_auth_token_page(admin_client, either, kind)

    (message,) = page_messages(page)
    assert message.startswith("Connected to Jira as Alice Jones")
    assert ("Warning: Alice Jones is also the Jira user of alice's own connection (My ALM Credentials), so nothing "
            "is done in Jira for alice through it while the account's own connection is that Jira user. Revoke "
            "alice's credential") in message
    assert re.search(r'<li class="warning">[^<]*Warning: Alice Jones', page)
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.CONNECTED, grant_owner="")
    assert "Warning: Alice Jones is also the Jira user of alice's own connection" in event.message


def test_the_accounts_connection_as_its_own_jira_user_has_no_warning(kind, either, alice, admin_client,
                                                                     mocked_jira):
    CredentialFactory(account=either, user=alice, me=ALICE[kind], tokens="ALICE-1")
    jira_consents(mocked_jira, kind, ACCOUNTS_OWN[kind], revokes=False)

    (message,) = page_messages(get_auth_token_page(admin_client, either, kind))

    assert message.startswith("Connected to Jira as Jira Admin") and "Warning" not in message
