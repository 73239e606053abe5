"""People's own Jira credentials: Test, Disconnect, what ends them, and the admins' view (issue 11).

- Test and Disconnect are one implementation for both kinds of grant: a person's credential uses the
  person's tokens with the account's Jira client, revokes only them, and leaves the account's own connection
  (and everyone else's) alone; messages speak to the person.
- What ends the account's connection ends its people's credentials too: a new Jira base URL or Client ID
  (revoked at the *old* Jira only) and deleting the account (the audit trail keeps whose grant it was).
- A person made inactive, or deleted, loses their credentials: revoked at Jira after the commit, wiped here,
  one audited event per credential.
- The account's page lists who connected (never a token), in a number of queries that does not grow with
  them; Revoke needs change permission and CSRF, and is audited.

Flows that revoke after the commit run with real commits (`django_db(transaction=True)`).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import responses
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent
from alm_accounts.signals import DEACTIVATED_ACTOR, DELETED_ACTOR
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    JIRA,
    REFRESH_TOKEN,
    REVOKE_URL,
    change_form_data,
    change_url,
    form_of,
    page_text,
    staff_user,
    texts,
)
from tests.factories import CredentialFactory, UserFactory

Status = ALMAccount.Status
Kind = AuthEvent.Kind
ADMIN_ACTOR = "jira-admin-user"  # the conftest admin_user
NEW = "https://jira-new.example.net/jira"
NEW_SECRET = "NEW-LINK-SECRET-5d2e"
OTHER = "https://jira-other.example.org"
SECRET_PATTERN = re.compile(r"ACCESSTOKEN|REFRESHTOKEN|CLIENTSECRET|NEW-LINK-SECRET|AT-\w+-\d|RT-\w+-\d")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def revoked(mocked_jira, url: str = REVOKE_URL) -> list[tuple[str, str, str]]:
    """(token, client_id, client_secret) of every revocation sent to `url`."""
    return [(f["token"], f["client_id"], f["client_secret"])
            for f in (form_of(c) for c in mocked_jira.calls if c.request.url == url)]


def tokens_of(credential: ALMCredential) -> tuple:
    credential.refresh_from_db()
    return credential.access_token, credential.refresh_token, credential.status


def assert_wiped(credential: ALMCredential):
    credential.refresh_from_db()
    assert (credential.access_token, credential.refresh_token, credential.token_expires_at) == (None, None, None)
    assert (credential.status, credential.connected_as) == (Status.NOT_CONNECTED, "")


def revoke_url(credential: ALMCredential, account: ALMAccount | None = None) -> str:
    return reverse("admin:alm_accounts_almaccount_revoke_credential",
                   args=[(account or credential.account).pk, credential.pk])


@pytest.fixture
def other_account(db):
    return ALMAccount.objects.create(name="Jira - Other", base_url=OTHER, client_id="cid-other",
                                     client_secret="OTHER-SECRET-1")


# --------------------------------------------------------------------------
# Test and Disconnect for a person's credential
# --------------------------------------------------------------------------


@pytest.fixture
def jira_with_people(fake_jira, db):
    """A Jira on a real socket where the account (as Jira Admin) and alice (as Alice Anders) hold grants."""
    account = ALMAccount.objects.create(name="Jira - Real", base_url=fake_jira.base_url, client_id="cid",
                                        client_secret=CLIENT_SECRET)
    link = {"redirect_uri": account.callback_url, "client_id": "cid", "client_secret": CLIENT_SECRET}
    own_access, own_refresh = fake_jira.add_grant("admin", **link, user="jadmin", display_name="Jira Admin")
    account.access_token, account.refresh_token = own_access, own_refresh
    account.token_expires_at, account.status = timezone.now() + timedelta(hours=1), Status.CONNECTED
    account.connected_as_name, account.connected_as_display_name = "jadmin", "Jira Admin"
    account.save()
    access, refresh = fake_jira.add_grant("alice", **link, user="alice.a", display_name="Alice Anders")
    credential = CredentialFactory(user=UserFactory(username="alice"), account=account, access_token=access,
                                   refresh_token=refresh, jira_user="alice.a", connected_as_display_name="Alice Anders")
    return fake_jira, account, credential


def test_testing_a_persons_credential_acts_as_their_jira_user_with_their_token(jira_with_people):
    fake_jira, account, credential = jira_with_people

    message = services.test_grant(grant=credential, actor="alice")

    # Jira answered as the owner of the token it got: alice's, not the account's.
    assert message == "Connected to Jira 9.12.2 as Alice Anders."
    assert {c.headers["Authorization"] for c in fake_jira.calls} == {"Bearer AT-alice-0"}
    (event,) = AuthEvent.objects.filter(kind=Kind.TEST_CONNECTION)
    assert (event.account, event.credential, event.grant_owner, event.actor, event.message) == (
        account, credential, "alice", "alice", message)


def test_testing_a_persons_credential_after_a_401_refreshes_only_their_grant(jira_with_people):
    fake_jira, account, credential = jira_with_people
    credential.access_token = "AT-alice-revoked-by-jira"  # Jira no longer accepts it: 401
    credential.save()

    message = services.test_grant(grant=credential, actor="alice")

    assert message == "Connected to Jira 9.12.2 as Alice Anders."
    assert fake_jira.refreshes == {"alice": 1}  # the account's grant was not touched
    assert tokens_of(credential)[:2] == ("AT-alice-1", "RT-alice-1")
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token) == ("AT-admin-0", "RT-admin-0")


def test_testing_a_credential_that_is_not_connected_says_so_in_the_persons_words(alice, account, mocked_jira):
    credential = ALMCredential.objects.create(account=account, user=alice)

    with pytest.raises(services.ServiceError) as failure:
        services.test_grant(grant=credential, actor="alice")

    assert str(failure.value) == ("Your Jira account is not connected to Jira - Core Banking yet: click Connect my "
                                  "Jira account under My ALM Credentials.")
    assert len(mocked_jira.calls) == 0
    (event,) = AuthEvent.objects.all()
    assert (event.kind, event.outcome, event.grant_owner) == (Kind.TEST_CONNECTION, "failed", "alice")


def test_testing_the_credential_of_an_inactive_person_sends_nothing(alice, connected_account, mocked_jira):
    mine = CredentialFactory(user=alice, account=connected_account)
    User.objects.filter(pk=alice.pk).update(is_active=False)  # bypasses the signal: the tokens are still here
    mine = ALMCredential.objects.select_related("account", "user").get(pk=mine.pk)

    with pytest.raises(services.ServiceError, match="alice is inactive"):
        services.test_grant(grant=mine, actor=ADMIN_ACTOR)

    assert len(mocked_jira.calls) == 0
    assert AuthEvent.objects.get().outcome == "failed"


def test_a_person_disconnecting_revokes_their_tokens_only_and_the_account_is_untouched(
        alice, bob, connected_account, mocked_jira):
    mine = CredentialFactory(user=alice, account=connected_account)
    bobs = CredentialFactory(user=bob, account=connected_account)
    mocked_jira.post(REVOKE_URL, status=200)

    outcome = services.disconnect_grant(grant=mine, actor="alice")

    assert outcome == "Disconnected: your tokens were deleted here and revoked at Jira."
    assert outcome.confirmed
    # alice's tokens, sent with the account's client credentials (the link that issued them).
    assert revoked(mocked_jira) == [("REFRESHTOKEN-alice", "client-id-123", CLIENT_SECRET),
                                    ("ACCESSTOKEN-alice", "client-id-123", CLIENT_SECRET)]
    assert_wiped(mine)
    assert tokens_of(bobs) == ("ACCESSTOKEN-bob", "REFRESHTOKEN-bob", Status.CONNECTED)
    connected_account.refresh_from_db()
    assert (connected_account.access_token, connected_account.refresh_token, connected_account.status) == (
        ACCESS_TOKEN, REFRESH_TOKEN, Status.CONNECTED)
    (event,) = AuthEvent.objects.all()
    assert (event.kind, event.account, event.credential, event.grant_owner, event.actor, event.message) == (
        Kind.DISCONNECTED, connected_account, mine, "alice", "alice", outcome)


def test_an_unconfirmed_revocation_tells_the_person_where_to_remove_the_grant_themselves(
        alice, connected_account, mocked_jira):
    mine = CredentialFactory(user=alice, account=connected_account, jira_user="alice.a",
                             connected_as_display_name="Alice Anders")
    mocked_jira.post(REVOKE_URL, status=404)

    outcome = services.disconnect_grant(grant=mine, actor="alice")

    assert not outcome.confirmed
    assert outcome.startswith("Disconnected: your tokens were deleted here; Jira did not confirm the revocation")
    assert ("you can remove it in your Jira profile (signed in to Jira as Alice Anders (alice.a)) under Authorized "
            "applications.") in outcome
    # Never the advice to delete the application link: that would end everyone's grants on it.
    assert "application link" not in outcome
    assert_wiped(mine)


# --------------------------------------------------------------------------
# A new base URL or Client ID ends the people's credentials too
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_base_url_ends_every_persons_credential_revoked_at_the_old_jira_only(
        admin_client, connected_account, other_account, alice, bob, mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    bobs = CredentialFactory(user=bob, account=connected_account)
    elsewhere = CredentialFactory(user=alice, account=other_account, access_token="ACCESSTOKEN-alice-other",
                                  refresh_token="REFRESHTOKEN-alice-other")
    mocked_jira.post(REVOKE_URL, status=200)
    mocked_jira.must_not_be_asked(mocked_jira.post(f"{NEW}/rest/oauth2/latest/revoke", status=200))  # would "work"

    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, base_url=NEW, client_secret=NEW_SECRET))

    assert response.status_code == 302
    said = texts(response)
    assert "The Jira connections of 2 people (alice, bob) were ended too" in said
    assert f"The Jira at {JIRA} confirmed the revocation of the tokens of alice, bob." in said
    assert_wiped(alices)
    assert_wiped(bobs)
    assert tokens_of(elsewhere) == ("ACCESSTOKEN-alice-other", "REFRESHTOKEN-alice-other", Status.CONNECTED)
    # Every token of the old link, revoked at the old Jira with the old credentials; nothing at the new host.
    assert sorted(revoked(mocked_jira)) == sorted(
        (token, "client-id-123", CLIENT_SECRET) for token in
        (ACCESS_TOKEN, REFRESH_TOKEN, "ACCESSTOKEN-alice", "REFRESHTOKEN-alice", "ACCESSTOKEN-bob", "REFRESHTOKEN-bob"))
    assert not [c for c in mocked_jira.calls if c.request.url.startswith(NEW)]
    ended = AuthEvent.objects.filter(kind=Kind.CONNECTION_ENDED).order_by("grant_owner")
    assert [(e.grant_owner, e.actor, e.account_id) for e in ended] == [
        ("", ADMIN_ACTOR, connected_account.pk), ("alice", ADMIN_ACTOR, connected_account.pk),
        ("bob", ADMIN_ACTOR, connected_account.pk)]
    for event in ended[1:]:
        assert f"because the Jira base URL changed from {JIRA} to {NEW}" in event.message
        assert "confirmed the revocation" in event.message and not SECRET_PATTERN.search(event.message)


@pytest.mark.django_db(transaction=True)
def test_a_new_client_id_ends_the_credentials_even_when_the_account_itself_is_not_connected(
        admin_client, account, alice, mocked_jira):
    alices = CredentialFactory(user=alice, account=account)
    mocked_jira.post(REVOKE_URL, status=200)

    response = admin_client.post(change_url(account), change_form_data(account, client_id="client-id-new"))

    assert response.status_code == 302
    assert ("The Jira connections of 1 person (alice) were ended because the Client ID changed: their tokens were "
            "deleted here; they connect again under My ALM Credentials.") in texts(response)
    assert_wiped(alices)
    assert revoked(mocked_jira) == [("REFRESHTOKEN-alice", "client-id-123", CLIENT_SECRET),
                                    ("ACCESSTOKEN-alice", "client-id-123", CLIENT_SECRET)]


def test_an_edit_that_keeps_the_jira_and_link_keeps_the_credentials(admin_client, connected_account, alice,
                                                                    mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)

    admin_client.post(change_url(connected_account), change_form_data(connected_account, name="Jira - Renamed"))

    assert tokens_of(alices) == ("ACCESSTOKEN-alice", "REFRESHTOKEN-alice", Status.CONNECTED)
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Deleting the account ends them all
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_an_account_revokes_every_credential_and_keeps_whose_they_were(
        admin_client, connected_account, alice, bob, mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    CredentialFactory(user=bob, account=connected_account)
    services.record_event(alices, actor="alice", kind=Kind.CONNECTED, ok=True, message="Connected to Jira as Alice.")
    seen_by_jira = []

    def revoke(request):
        seen_by_jira.append((connection.in_atomic_block, ALMCredential.objects.exists()))
        return 200, {}, ""

    mocked_jira.add_callback(responses.POST, REVOKE_URL, callback=revoke)

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_delete", args=[connected_account.pk]),
                                 {"post": "yes"})

    assert response.status_code == 302
    assert seen_by_jira == [(False, False)] * 6  # after the delete committed, outside any transaction
    assert sorted(f["token"] for f in map(form_of, mocked_jira.calls)) == sorted(
        [ACCESS_TOKEN, REFRESH_TOKEN, "ACCESSTOKEN-alice", "REFRESHTOKEN-alice", "ACCESSTOKEN-bob",
         "REFRESHTOKEN-bob"])
    assert "Jira - Core Banking: The Jira at" in texts(response)
    assert "confirmed the revocation of the tokens of alice, bob." in texts(response)
    assert not ALMCredential.objects.exists()
    assert User.objects.filter(username__in=["alice", "bob"]).count() == 2  # people stay; only their grants went

    # The trail outlives the account and the credentials: named by account and person.
    events = AuthEvent.objects.order_by("id")
    assert all((e.account, e.credential, e.account_name) == (None, None, "Jira - Core Banking") for e in events)
    assert [(e.kind, e.grant_owner) for e in events] == [
        (Kind.CONNECTED, "alice"), (Kind.CONNECTION_ENDED, "alice"), (Kind.CONNECTION_ENDED, "bob"),
        (Kind.ACCOUNT_DELETED, "")]
    deleted = events.last()
    assert "The Jira connections of 2 people (alice, bob) ended with it." in deleted.message
    assert "because the ALM account Jira - Core Banking was deleted" in events[1].message
    assert "confirmed the revocation" in events[1].message


# --------------------------------------------------------------------------
# A person made inactive, or deleted
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_making_a_person_inactive_revokes_and_wipes_their_credentials_and_not_others(
        connected_account, other_account, alice, bob, mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    alices_other = CredentialFactory(user=alice, account=other_account, access_token="ACCESSTOKEN-alice-o",
                                     refresh_token="REFRESHTOKEN-alice-o")
    bobs = CredentialFactory(user=bob, account=connected_account)
    seen_by_jira = []

    def revoke(request):
        seen_by_jira.append((connection.in_atomic_block,
                             ALMCredential.objects.filter(user=alice, refresh_token__isnull=False).exists()))
        return 200, {}, ""

    mocked_jira.add_callback(responses.POST, REVOKE_URL, callback=revoke)
    mocked_jira.add_callback(responses.POST, f"{OTHER}/rest/oauth2/latest/revoke", callback=revoke)

    alice.is_active = False
    alice.save()

    assert seen_by_jira == [(False, False)] * 4  # wiped and committed before Jira was asked
    assert sorted(revoked(mocked_jira)) == [("ACCESSTOKEN-alice", "client-id-123", CLIENT_SECRET),
                                            ("REFRESHTOKEN-alice", "client-id-123", CLIENT_SECRET)]
    assert sorted(revoked(mocked_jira, f"{OTHER}/rest/oauth2/latest/revoke")) == [
        ("ACCESSTOKEN-alice-o", "cid-other", "OTHER-SECRET-1"), ("REFRESHTOKEN-alice-o", "cid-other", "OTHER-SECRET-1")]
    assert_wiped(alices)
    assert_wiped(alices_other)
    assert tokens_of(bobs) == ("ACCESSTOKEN-bob", "REFRESHTOKEN-bob", Status.CONNECTED)
    events = AuthEvent.objects.order_by("account__name")
    assert [(e.kind, e.actor, e.grant_owner, e.account_name, e.credential_id) for e in events] == [
        (Kind.CONNECTION_ENDED, DEACTIVATED_ACTOR, "alice", "Jira - Core Banking", alices.pk),
        (Kind.CONNECTION_ENDED, DEACTIVATED_ACTOR, "alice", "Jira - Other", alices_other.pk)]
    assert all("because alice was made inactive" in e.message and "confirmed the revocation" in e.message
               for e in events)

    # Saving the inactive person again (or their login time) asks Jira nothing more.
    calls = len(mocked_jira.calls)
    alice.first_name = "Alice"
    alice.save()
    User.objects.get(pk=alice.pk).save(update_fields=["last_login"])
    assert len(mocked_jira.calls) == calls and AuthEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_deactivating_a_person_in_the_admin_ends_their_credentials(admin_client, connected_account, alice,
                                                                  mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    mocked_jira.post(REVOKE_URL, status=200)
    page = admin_client.get(reverse("admin:auth_user_change", args=[alice.pk]))
    assert page.status_code == 200

    response = admin_client.post(reverse("admin:auth_user_change", args=[alice.pk]), {
        "username": "alice", "is_staff": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00"})  # is_active unticked

    assert response.status_code == 302, page_text(response)[:2000]
    assert not User.objects.get(pk=alice.pk).is_active
    assert_wiped(alices)
    assert sorted(t for t, _, _ in revoked(mocked_jira)) == ["ACCESSTOKEN-alice", "REFRESHTOKEN-alice"]
    (event,) = AuthEvent.objects.all()
    assert (event.actor, event.grant_owner) == (DEACTIVATED_ACTOR, "alice")


@pytest.mark.django_db(transaction=True)
def test_deleting_a_person_revokes_their_credentials_and_the_trail_keeps_their_name(
        admin_client, connected_account, alice, bob, mocked_jira):
    CredentialFactory(user=alice, account=connected_account)
    bobs = CredentialFactory(user=bob, account=connected_account)
    mocked_jira.post(REVOKE_URL, status=200)

    # Through Django's own user admin: their credentials must not stop the deletion.
    response = admin_client.post(reverse("admin:auth_user_delete", args=[alice.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(username="alice").exists()

    assert sorted(t for t, _, _ in revoked(mocked_jira)) == ["ACCESSTOKEN-alice", "REFRESHTOKEN-alice"]
    assert list(ALMCredential.objects.all()) == [bobs]
    assert tokens_of(bobs) == ("ACCESSTOKEN-bob", "REFRESHTOKEN-bob", Status.CONNECTED)
    (event,) = AuthEvent.objects.all()
    assert (event.kind, event.actor, event.grant_owner, event.account, event.credential) == (
        Kind.CONNECTION_ENDED, DELETED_ACTOR, "alice", connected_account, None)
    assert "because alice was deleted" in event.message and "confirmed the revocation" in event.message


def test_a_rolled_back_deactivation_revokes_nothing(connected_account, alice, mocked_jira,
                                                   django_capture_on_commit_callbacks):
    alices = CredentialFactory(user=alice, account=connected_account)

    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                alice.is_active = False
                alice.save()
                raise RuntimeError("the admin's save failed later")
        except RuntimeError:
            pass

    assert callbacks == [] and len(mocked_jira.calls) == 0
    assert tokens_of(alices) == ("ACCESSTOKEN-alice", "REFRESHTOKEN-alice", Status.CONNECTED)
    assert not AuthEvent.objects.exists()


# --------------------------------------------------------------------------
# The admins' view: User credentials on the account's page, Revoke
# --------------------------------------------------------------------------


def test_the_account_page_lists_who_connected_as_whom_without_any_token(admin_client, connected_account, alice, bob):
    CredentialFactory(user=alice, account=connected_account, jira_user="alice.a",
                      connected_as_display_name="Alice Anders")
    ALMCredential.objects.create(account=connected_account, user=bob, status=Status.NEEDS_REAUTHORIZATION,
                                 connected_as_name="bob.b", connected_as_display_name="Bob Brown",
                                 refresh_token="REFRESHTOKEN-bob-dead")

    page = page_text(admin_client.get(change_url(connected_account)))

    assert "User credentials" in page and "People without their own connection" in page
    section = page[page.index('class="alm-user-credentials"'):]
    section = section[:section.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>.*?>(.*?)</span>", section)
    assert rows == [("alice", "Alice Anders (alice.a)", "Connected"), ("bob", "Bob Brown (bob.b)",
                                                                      "Needs re-authorization")]
    assert section.count(">Revoke</button>") == 2
    assert not SECRET_PATTERN.search(page)


def test_the_policy_for_people_without_a_connection_is_edited_on_the_account_page(admin_client, account):
    admin_client.post(change_url(account), change_form_data(account, unconnected_users="refuse"))

    account.refresh_from_db()
    assert account.unconnected_users == ALMAccount.UnconnectedUsers.REFUSE


def test_view_only_staff_see_the_credentials_but_cannot_revoke(client, connected_account, alice, mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    viewer = staff_user("viewer", "view_almaccount", "view_almcredential")
    client.force_login(viewer)

    page = page_text(client.get(change_url(connected_account)))
    response = client.post(revoke_url(alices))

    assert "alice" in page and ">Revoke</button>" not in page and 'id="alm-revoke-credential"' not in page
    assert response.status_code == 403
    assert tokens_of(alices) == ("ACCESSTOKEN-alice", "REFRESHTOKEN-alice", Status.CONNECTED)
    assert len(mocked_jira.calls) == 0 and not AuthEvent.objects.exists()


def test_revoke_needs_the_csrf_token_and_is_audited(admin_user, connected_account, alice, bob, mocked_jira):
    alices = CredentialFactory(user=alice, account=connected_account)
    bobs = CredentialFactory(user=bob, account=connected_account)
    mocked_jira.post(REVOKE_URL, status=200)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    forged = browser.post(revoke_url(alices))
    assert forged.status_code == 403 and "CSRF verification failed" in forged.content.decode()
    assert tokens_of(alices)[2] == Status.CONNECTED and len(mocked_jira.calls) == 0

    # The page's own revoke form: its token, and the formaction of alice's button.
    page = browser.get(change_url(connected_account)).content.decode()
    revoke_form = re.search(r'<form id="alm-revoke-credential"[^>]*>(.*?)</form>', page, re.S).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', revoke_form).group(1)
    button = rf'form="alm-revoke-credential" formaction="([^"]+)"[^>]*value="{alices.pk}"'
    action = html.unescape(re.search(button, page).group(1))
    response = browser.post(action, {"csrfmiddlewaretoken": token}, follow=True)

    assert response.redirect_chain == [(change_url(connected_account), 302)]
    assert "Disconnected alice: their tokens were deleted here and revoked at Jira." in page_text(response)
    assert_wiped(alices)
    assert tokens_of(bobs)[2] == Status.CONNECTED
    assert sorted(t for t, _, _ in revoked(mocked_jira)) == ["ACCESSTOKEN-alice", "REFRESHTOKEN-alice"]
    (event,) = AuthEvent.objects.all()
    assert (event.kind, event.actor, event.grant_owner, event.credential) == (
        Kind.DISCONNECTED, ADMIN_ACTOR, "alice", alices)
    assert "Disconnected alice" in event.message
    # The row stays, not connected, and offers no Revoke any more.
    assert page_text(browser.get(change_url(connected_account))).count(">Revoke</button>") == 1


def test_a_credential_is_revoked_only_through_its_own_account(admin_client, connected_account, other_account, alice,
                                                              mocked_jira):
    elsewhere = CredentialFactory(user=alice, account=other_account)

    response = admin_client.post(revoke_url(elsewhere, account=connected_account))

    assert response.status_code == 302
    assert "no longer exists: nothing was revoked" in texts(response)
    assert tokens_of(elsewhere)[2] == Status.CONNECTED and len(mocked_jira.calls) == 0
    assert admin_client.get(revoke_url(elsewhere)).status_code == 405


def test_the_account_page_renders_in_as_many_queries_for_30_credentials_as_for_1(admin_client, connected_account):
    CredentialFactory(user=UserFactory(username="person-0"), account=connected_account)
    admin_client.get(change_url(connected_account))  # warm-up: session, content types

    with CaptureQueriesContext(connection) as one:
        assert admin_client.get(change_url(connected_account)).status_code == 200
    for n in range(1, 30):
        CredentialFactory(user=UserFactory(username=f"person-{n}"), account=connected_account)
    with CaptureQueriesContext(connection) as thirty:
        page = admin_client.get(change_url(connected_account))

    assert page_text(page).count(">Revoke</button>") == 30
    assert len(thirty) == len(one), [q["sql"][:120] for q in thirty.captured_queries]


# --------------------------------------------------------------------------
# The list of ALM credentials: read-only, no tokens
# --------------------------------------------------------------------------


def test_the_credentials_list_is_read_only_and_shows_no_token(admin_client, connected_account, other_account,
                                                             alice, bob):
    alices = CredentialFactory(user=alice, account=connected_account, jira_user="alice.a",
                               connected_as_display_name="Alice Anders")
    CredentialFactory(user=bob, account=other_account)
    changelist = reverse("admin:alm_accounts_almcredential_changelist")

    listed = page_text(admin_client.get(changelist))
    of_account = page_text(admin_client.get(changelist, {"account__id__exact": connected_account.pk}))
    detail = page_text(admin_client.get(reverse("admin:alm_accounts_almcredential_change", args=[alices.pk])))

    assert "Alice Anders (alice.a)" in listed and "Jira - Other" in listed
    assert "alice" in of_account and "Jira - Other" not in of_account
    for shown in (listed, of_account, detail):
        assert not SECRET_PATTERN.search(shown)
    assert "Alice Anders (alice.a)" in detail and ">Revoke</button>" in detail
    assert admin_client.get(reverse("admin:alm_accounts_almcredential_add")).status_code == 403
    # Deleting the row alone would leave the grant alive at Jira: no delete page, action or link.
    delete = reverse("admin:alm_accounts_almcredential_delete", args=[alices.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in listed and delete not in detail
    assert tokens_of(alices)[2] == Status.CONNECTED
