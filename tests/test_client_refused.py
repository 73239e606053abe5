"""A Jira admin deletes the incoming link, or changes its secret (issue 23.2): the account's own state.

Jira then answers every refresh of every grant of the account with
`invalid_client` (Atlassian: 401 `access_denied`), whatever the refresh token.
The refresher stops asking (one check every few hours, or at once when the
credentials are edited), counts those grants apart so that its runs do not
fail for it, tells the account's recipients once what to do in Jira, and
tells each person to ask their Jira administrator.

Jira is the fake on a real socket (tests/doubles/fake_jira.py), which counts every
token request; the refresher is the real command, one refresh at a time (with
several in flight, each grant already on its way to Jira when the first answer
comes back is refused too: at most one token request per grant, once); mail
goes to `locmem`.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import Alert, ALMAccount, ALMCredential, RefresherRun
from alm_accounts.services import GrantRef, RefreshOutcome
from tests.conftest import CLOUD_TOKEN_URL, change_form_data
from tests.doubles.fake_jira import TOKEN_PATH

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_ID, CLIENT_SECRET = "link-client-1", "CLIENTSECRET-link-9f2e"
NEW_SECRET = "CLIENTSECRET-link-new-4c1d"
TEAM = "jira-team@bank.example"
Status = ALMAccount.Status
REFUSED = RefreshOutcome.CLIENT_REFUSED.value
METRICS_TOKEN = "METRICSTOKEN-client-refused-31"


@pytest.fixture
def linked(fake_jira, settings):
    """An account whose own connection and two people's credentials work through one link; all due now."""
    settings.JIRA_RETRY_BACKOFF = []
    settings.ADMINS = [("Ops", "ops@bank.example")]
    now = timezone.now()
    common = {"status": Status.CONNECTED, "token_scope": "ADMIN", "token_expires_at": now + timedelta(minutes=2),
              "connected_at": now - timedelta(days=20), "last_refreshed_at": now - timedelta(hours=2),
              "last_used_at": now}  # in use: refreshed before expiry (issue 21)
    account = ALMAccount.objects.create(name="Jira - Core Banking", base_url=fake_jira.base_url, client_id=CLIENT_ID,
                                        client_secret=CLIENT_SECRET, client_secret_base_url=fake_jira.base_url,
                                        notify=TEAM, **common)
    grants = [account] + [
        ALMCredential.objects.create(account=account, user=User.objects.create_user(name, f"{name}@bank.example"),
                                     connected_as_name=name, **common) for name in ("alice", "bob")]
    for grant in grants:
        access, refresh = fake_jira.add_grant(grant.grant_owner or "account", redirect_uri=account.callback_url,
                                              client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        grant.access_token, grant.refresh_token = access, refresh
        grant.save()
    return account


@pytest.fixture
def refresher(run_command):
    def run(*args: str):
        return run_command("--concurrency", "1", *args)
    return run


def token_requests(fake_jira) -> int:
    return len(fake_jira.calls_to(TOKEN_PATH))


def mails_to(address: str) -> list[str]:
    return [message.subject for message in mail.outbox if address in message.to]


def test_a_removed_link_is_asked_once_alerted_once_and_never_fails_the_runs(linked, fake_jira, refresher, settings,
                                                                               admin_client):
    fake_jira.remove_client(CLIENT_ID)

    first = refresher("-v", "1")
    # One token request found out; the other grants of the account were not sent to Jira.
    assert token_requests(fake_jira) == 1
    assert first.code == 0, first.out + first.err
    assert f"3 {REFUSED}" in first.summary
    run = RefresherRun.objects.get()
    assert (run.outcome, run.client_refused, run.failed) == ("ok", 3, 0)

    # The account's recipients are told once, with what to do in Jira; each person to ask their Jira administrator.
    assert mails_to(TEAM) == ["[Kendis] Jira no longer accepts the application link: Jira - Core Banking"]
    (link_mail,) = [m for m in mail.outbox if TEAM in m.to]
    assert "Application links" in link_mail.body and "create an incoming link again" in link_mail.body
    for person in ("alice", "bob"):
        (subject,) = mails_to(f"{person}@bank.example")
        assert subject == f"[Kendis] Jira connection broken: Jira - Core Banking ({person})"
        (body,) = [m.body for m in mail.outbox if f"{person}@bank.example" in m.to]
        assert "ask your Jira administrator" in body
        assert "Client Secret" not in body and "Get Auth Token" not in body
    assert "ops@bank.example" not in {address for m in mail.outbox for address in m.to}
    alice = ALMCredential.objects.get(user__username="alice")
    assert alice.status == Status.ERROR and "ask your Jira administrator" in alice.last_error

    # Pass after pass: no token request, nothing new to tell, every run ok.
    for _ in range(3):
        again = refresher("--window", "600")
        assert again.code == 0, again.out + again.err
    assert token_requests(fake_jira) == 1
    assert len(mail.outbox) == 3
    assert set(RefresherRun.objects.values_list("outcome", flat=True)) == {"ok"}

    # Counted apart at a glance and in the metrics.
    summary = admin_client.get(reverse("admin:alm_accounts_almaccount_changelist"))
    assert "3 refused by Jira: link removed or secret changed (1 account, 2 people)" in " ".join(
        re.sub(r"<[^>]+>", "", summary.content.decode()).split())
    people = admin_client.get(reverse("admin:alm_accounts_almcredential_changelist") + "?health=client_refused")
    assert people.context["cl"].result_count == 2
    settings.METRICS_TOKEN = METRICS_TOKEN
    metrics = admin_client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}").content.decode()
    assert 'kendis_grants_health{health="client_refused",kind="account"} 1.0' in metrics
    assert 'kendis_grants_health{health="client_refused",kind="user"} 2.0' in metrics
    assert 'kendis_grants_health{health="failing",kind="user"} 0.0' in metrics

    # Hours later: one check (one token request), still refused, nobody told again.
    ALMAccount.objects.filter(pk=linked.pk).update(client_checked_at=timezone.now() - timedelta(hours=7))
    later = refresher("--window", "600")
    assert later.code == 0
    assert token_requests(fake_jira) == 2
    assert len(mail.outbox) == 3


def test_a_changed_secret_pasted_again_makes_every_connection_work_and_tells_the_people(
        linked, fake_jira, refresher, admin_client):
    for grant in fake_jira.grants.values():  # the Jira admin regenerated the link's secret
        grant.client_secret = NEW_SECRET
    assert refresher().code == 0
    assert token_requests(fake_jira) == 1
    linked.refresh_from_db()
    assert linked.client_refused_at is not None

    # The admin pastes the new secret: the next pass asks Jira at once, and every grant works again.
    saved = admin_client.post(reverse("admin:alm_accounts_almaccount_change", args=[linked.pk]),
                              change_form_data(linked, client_secret=NEW_SECRET, notify=TEAM))
    assert saved.status_code == 302, saved.content[:2000]
    after = refresher("--window", "600")
    assert after.code == 0, after.out + after.err
    assert "3 refreshed" in after.summary
    assert set(ALMAccount.objects.values_list("status", "client_refused_at")) == {(Status.CONNECTED, None)}
    assert set(ALMCredential.objects.values_list("status", flat=True)) == {Status.CONNECTED}
    for person in ("alice", "bob"):
        assert mails_to(f"{person}@bank.example")[-1] == \
            f"[Kendis] Jira connection working again: Jira - Core Banking ({person})"


def test_a_check_that_finds_the_link_working_ends_the_state_and_tells_the_account(linked, fake_jira, refresher):
    fake_jira.remove_client(CLIENT_ID)
    refresher()
    fake_jira.removed_clients.clear()  # a proxy's mistake after all: the link works
    ALMAccount.objects.filter(pk=linked.pk).update(client_checked_at=timezone.now() - timedelta(hours=7))

    result = refresher("--window", "600")

    assert result.code == 0 and "3 refreshed" in result.summary
    assert mails_to(TEAM)[-1] == "[Kendis] Jira accepts the application link again: Jira - Core Banking"
    assert [a.event for a in Alert.objects.filter(grant_owner="").order_by("pk")] == ["broken", "recovered"]


def test_on_demand_use_gets_the_persons_words_without_asking_jira(linked, fake_jira, refresher):
    fake_jira.remove_client(CLIENT_ID)
    refresher()
    ALMCredential.objects.filter(user__username="alice").update(token_expires_at=timezone.now())
    alice = ALMCredential.objects.get(user__username="alice")

    with pytest.raises(services.ServiceError, match="ask your Jira administrator"):
        services.grants.valid_access_token(account=alice)
    assert token_requests(fake_jira) == 1


def test_a_credential_that_never_worked_is_an_ordinary_failure(linked, fake_jira):
    """A wrong secret on a link that never gave a token is the admin's typo, not a removed link."""
    ALMAccount.objects.filter(pk=linked.pk).update(connected_at=None, last_refreshed_at=None)
    fake_jira.remove_client(CLIENT_ID)
    result = services.refresh_grant(grant=GrantRef("account", linked.pk), actor="test")
    assert result.outcome is RefreshOutcome.FAILED
    linked.refresh_from_db()
    assert linked.client_refused_at is None


def test_jira_cloud_app_removed_at_atlassian_is_the_same_state(connected_cloud_account, mocked_jira):
    mocked_jira.post(CLOUD_TOKEN_URL, status=401, json={"error": "access_denied", "error_description": "Unauthorized"})

    result = services.refresh_grant(grant=GrantRef.of(connected_cloud_account), actor="test")
    again = services.refresh_grant(grant=GrantRef.of(connected_cloud_account), actor="test",
                                   due_within=timedelta(hours=1))

    assert (result.outcome, again.outcome) == (RefreshOutcome.CLIENT_REFUSED, RefreshOutcome.CLIENT_REFUSED)
    assert len([c for c in mocked_jira.calls if c.request.url == CLOUD_TOKEN_URL]) == 1
    (alert,) = Alert.objects.all()
    assert alert.reason == "client_refused" and "developer console" in alert.message
    assert "ATLASSIAN_CLIENT_SECRET" in alert.message
