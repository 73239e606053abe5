"""Someone is told when a Jira connection breaks, and when it works again (issue 12, alerts).

One alert per transition, decided under the grant's row lock and delivered
after the commit: by e-mail (Django's `locmem` backend, set by pytest-django,
so `mail.outbox` holds what was sent) and to a webhook on a real local socket
(tests/doubles/webhook_receiver.py) that checks the HMAC signature as the README
tells receivers to. Jira is mocked with `responses` (the receiver is let
through); refreshes and Get Auth Token run the real services and views.

transaction=True: the delivery runs on commit, as in production, so a test
sees exactly what would be sent and when.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import Alert, ALMAccount, ALMCredential
from alm_accounts.services import GrantRef, RefreshOutcome, alerts
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    MYSELF_URL,
    REFRESH_TOKEN,
    TOKEN_URL,
    change_form_data,
    query_of,
    staff_user,
    token_answer,
)
from tests.doubles.servers import free_port
from tests.doubles.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_SECRET = "WEBHOOKSECRET-alerts-4b7e2a"
WEBHOOK_PATH = "/services/T0001/B0001/WEBHOOKPATHSECRET-9d8c"  # a Slack webhook URL keeps its secret in the path
NOTIFY = ["ops@bank.example", "jira-team@bank.example"]
ME = {"name": "jadmin", "key": "JIRAUSER10000", "displayName": "Jira Admin"}
Status = ALMAccount.Status
Delivery = Alert.Delivery
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def alerting(settings, webhook, mocked_jira):
    """Alerts switched on: ADMINS, a signed webhook; Jira mocked, the webhook reached for real."""
    settings.ADMINS = [("Ops on call", "oncall@example.com")]
    settings.DEFAULT_FROM_EMAIL = "kendis@bank.example"
    settings.ALERT_WEBHOOK_URL = webhook.base_url + WEBHOOK_PATH
    settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.JIRA_RETRY_BACKOFF = []  # one token request per refresh: each scripted answer is one refresh
    mocked_jira.add_passthru(webhook.base_url)
    return settings


def refresh(grant) -> services.RefreshResult:
    return services.refresh_grant(grant=GrantRef.of(grant), actor="test")


# Jira's token endpoint gives one answer at a time: each helper replaces the previous one.


def jira_refuses_the_grant(mocked_jira):
    mocked_jira.upsert("POST", TOKEN_URL, json={"error": "invalid_grant", "error_description": "Invalid refresh token"},
                     status=400)


def jira_is_unavailable(mocked_jira):
    mocked_jira.upsert("POST", TOKEN_URL, body="<html>Service Unavailable</html>", status=503, content_type="text/html")


def jira_refreshes(mocked_jira, n: int = 2):
    mocked_jira.upsert("POST", TOKEN_URL, json=token_answer(n))


def get_auth_token(client, account, mocked_jira):
    """Click Get Auth Token on the account page, consent at Jira, come back on the callback URL."""
    start = client.post(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]),
                        change_form_data(account, notify=account.notify, _get_auth_token="Get Auth Token"))
    assert start.status_code == 302, start.content[:2000]
    state = query_of(start["Location"])["state"]
    jira_refreshes(mocked_jira, 3)
    mocked_jira.upsert("GET", MYSELF_URL, json=ME)
    landed = client.get(urlsplit(account.callback_url).path, {"code": "AUTHCODE-alerts-1f2e", "state": state})
    assert landed.status_code == 302, landed.content[:2000]


def fail_for(grant, minutes: int):
    """As if its refreshes had been failing for that long."""
    type(grant).objects.filter(pk=grant.pk).update(failing_since=timezone.now() - timedelta(minutes=minutes))


def sent() -> list[tuple[str, list[str]]]:
    return [(message.subject, message.to) for message in mail.outbox]


def alert_states() -> list[tuple[str, str, str]]:
    return list(Alert.objects.order_by("pk").values_list("event", "email_state", "webhook_state"))


def connected_credential(account, user) -> ALMCredential:
    now = timezone.now()
    return ALMCredential.objects.create(
        account=account, user=user, access_token="ALICE-access-77", refresh_token="ALICE-refresh-77",
        token_expires_at=now + timedelta(minutes=5), token_scope="WRITE", status=Status.CONNECTED,
        connected_at=now, connected_as_name="jalice", connected_as_display_name="Alice Jones")


class RefusingSMTPBackend(BaseEmailBackend):
    """A mail server that refuses our login, as smtplib reports it."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid")


# --------------------------------------------------------------------------
# One alert per transition
# --------------------------------------------------------------------------


def test_needs_reauthorization_is_told_once_and_get_auth_token_again_is_told_once(
        alerting, connected_account, mocked_jira, admin_client, webhook):
    account = connected_account
    account.notify = ", ".join(NOTIFY)
    account.save()
    page = f"http://testserver/admin/alm_accounts/almaccount/{account.pk}/change/"

    jira_refuses_the_grant(mocked_jira)
    assert refresh(account).outcome is RefreshOutcome.NEEDS_REAUTHORIZATION

    assert sent() == [("[Kendis] Jira connection broken: Jira - Core Banking", NOTIFY)]
    broken = mail.outbox[0]
    assert broken.from_email == "kendis@bank.example"
    assert "needs to be authorized again" in broken.body and "Get Auth Token" in broken.body
    assert page in broken.body
    assert [(body["event"], body["reason"]) for body in webhook.bodies()] == [("broken", "needs_reauthorization")]
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.DELIVERED)]

    # A second refresh (another run, the admin's button) fails again: nothing new to tell.
    assert refresh(account).outcome is RefreshOutcome.NOT_CONNECTED
    assert services.deliver_pending().alerts == 0
    assert len(mail.outbox) == 1 and len(webhook.received) == 1

    # The admin clicks Get Auth Token: one "working again".
    get_auth_token(admin_client, account, mocked_jira)
    account.refresh_from_db()
    assert account.status == Status.CONNECTED
    assert sent()[1:] == [("[Kendis] Jira connection working again: Jira - Core Banking", NOTIFY)]
    assert "works again" in mail.outbox[1].body
    assert [body["event"] for body in webhook.bodies()] == ["broken", "recovered"]
    assert webhook.bodies()[1]["status"] == "Connected"
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.DELIVERED),
                              ("recovered", Delivery.DELIVERED, Delivery.DELIVERED)]

    # ... and its next refreshes are ordinary: nothing more.
    jira_refreshes(mocked_jira, 4)
    assert refresh(account).outcome is RefreshOutcome.REFRESHED
    assert len(mail.outbox) == 2 and len(webhook.received) == 2


def test_the_invalid_grant_alert_names_the_refresh_token_lifetime_as_a_likely_cause(
        alerting, connected_account, mocked_jira, webhook):
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)

    (message,) = mail.outbox
    for text in (message.body, webhook.bodies()[0]["message"]):
        assert "90 days" in text and "refresh.token.expiration.seconds" in text


def test_a_503_that_recovers_within_the_threshold_tells_nobody(alerting, connected_account, mocked_jira, webhook):
    jira_is_unavailable(mocked_jira)
    assert refresh(connected_account).outcome is RefreshOutcome.FAILED
    connected_account.refresh_from_db()
    assert connected_account.failing_since is not None  # the failure is counted ...
    jira_refreshes(mocked_jira)
    assert refresh(connected_account).outcome is RefreshOutcome.REFRESHED

    connected_account.refresh_from_db()
    assert connected_account.failing_since is None  # ... and forgotten
    assert mail.outbox == [] and webhook.received == [] and not Alert.objects.exists()


def test_failing_for_longer_than_the_threshold_is_told_once_then_its_recovery(
        alerting, connected_account, mocked_jira, webhook):
    jira_is_unavailable(mocked_jira)
    refresh(connected_account)
    assert mail.outbox == []

    fail_for(connected_account, alerting.ALERT_FAILING_AFTER_MINUTES + 1)
    refresh(connected_account)
    assert sent() == [("[Kendis] Jira connection broken: Jira - Core Banking", ["oncall@example.com"])]
    assert "could not be refreshed for more than 30 minutes" in mail.outbox[0].body
    assert webhook.bodies()[0]["reason"] == "failing" and webhook.bodies()[0]["status"] == "Failing"

    refresh(connected_account)  # still failing: already told
    assert len(mail.outbox) == 1

    jira_refreshes(mocked_jira)
    assert refresh(connected_account).outcome is RefreshOutcome.REFRESHED
    assert [m.subject for m in mail.outbox] == ["[Kendis] Jira connection broken: Jira - Core Banking",
                                                "[Kendis] Jira connection working again: Jira - Core Banking"]
    assert [body["event"] for body in webhook.bodies()] == ["broken", "recovered"]


def test_an_access_token_that_expired_and_cannot_be_refreshed_is_told_at_once(
        alerting, connected_account, mocked_jira, webhook):
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() - timedelta(minutes=1))
    jira_is_unavailable(mocked_jira)
    refresh(connected_account)

    (message,) = mail.outbox
    assert "access token has expired" in message.body
    assert webhook.bodies()[0]["reason"] == "expired"


def test_an_alert_is_sent_only_after_its_transaction_commits(alerting, connected_account, webhook):
    with pytest.raises(RuntimeError), transaction.atomic():
        alerts.raise_alert(connected_account, event=Alert.Event.BROKEN, reason="failing", detail="x",
                           now=timezone.now())
        raise RuntimeError("rolled back")
    assert mail.outbox == [] and webhook.received == [] and not Alert.objects.exists()

    with transaction.atomic():
        alerts.raise_alert(connected_account, event=Alert.Event.BROKEN, reason="failing", detail="x",
                           now=timezone.now())
        assert mail.outbox == [] and webhook.received == []  # not before the commit
    assert len(mail.outbox) == 1 and len(webhook.received) == 1


# --------------------------------------------------------------------------
# Who is told
# --------------------------------------------------------------------------


def test_an_account_without_a_notify_list_tells_the_admins(alerting, connected_account, mocked_jira):
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    assert sent()[0][1] == ["oncall@example.com"]


def test_with_neither_notify_list_nor_admins_only_the_webhook_is_told(alerting, connected_account, mocked_jira,
                                                                      webhook):
    alerting.ADMINS = []
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    assert mail.outbox == [] and len(webhook.received) == 1
    assert alert_states() == [("broken", Delivery.NOT_NEEDED, Delivery.DELIVERED)]


def test_a_persons_credential_tells_that_person(alerting, account, alice, mocked_jira, webhook):
    account.notify = ", ".join(NOTIFY)
    account.save()
    credential = connected_credential(account, alice)

    jira_refuses_the_grant(mocked_jira)
    assert refresh(credential).outcome is RefreshOutcome.NEEDS_REAUTHORIZATION

    assert sent() == [("[Kendis] Jira connection broken: Jira - Core Banking (alice)", ["alice@bank.example"])]
    assert "My ALM Credentials" in mail.outbox[0].body and "Reconnect" in mail.outbox[0].body
    assert "http://testserver" + reverse("my_alm_credentials") in mail.outbox[0].body
    body = webhook.bodies()[0]
    assert (body["account"], body["grant_owner"]) == ("Jira - Core Banking", "alice")


def test_a_persons_credential_also_tells_the_account_when_it_refuses_people_without_their_own(
        alerting, account, alice, mocked_jira):
    account.notify = ", ".join(NOTIFY)
    account.unconnected_users = ALMAccount.UnconnectedUsers.REFUSE
    account.save()
    credential = connected_credential(account, alice)

    jira_refuses_the_grant(mocked_jira)
    refresh(credential)

    assert sent() == [("[Kendis] Jira connection broken: Jira - Core Banking (alice)",
                       ["alice@bank.example", *NOTIFY])]


# --------------------------------------------------------------------------
# The webhook
# --------------------------------------------------------------------------


def test_the_webhook_gets_the_alert_as_signed_json_with_a_slack_text(alerting, connected_account, mocked_jira,
                                                                     webhook):
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)

    (request,) = webhook.received
    assert request.path == WEBHOOK_PATH
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert webhook.verify(request, WEBHOOK_SECRET)
    assert not webhook.verify(request, "another secret")
    alert = Alert.objects.get()
    link = f"http://testserver/admin/alm_accounts/almaccount/{connected_account.pk}/change/"
    body = request.json
    assert set(body) == {"id", "event", "reason", "account", "grant_owner", "status", "message", "link",
                         "created_at", "text"}
    assert body == {
        "id": alert.pk, "event": "broken", "reason": "needs_reauthorization", "account": "Jira - Core Banking",
        "grant_owner": "", "status": "Needs re-authorization", "message": alert.message, "link": link,
        "created_at": alert.created_at.isoformat(),
        "text": f"Jira connection broken: Jira - Core Banking (Needs re-authorization). {link}",
    }
    assert "\n" not in body["text"]
    # Signed over the timestamp and the raw body: the same body with another timestamp does not verify.
    replayed = type(request)(request.path, {**request.headers, "X-Kendis-Timestamp": "1000000000"}, request.body)
    assert not webhook.verify(replayed, WEBHOOK_SECRET)


def test_without_a_secret_the_webhook_is_not_signed(alerting, connected_account, mocked_jira, webhook):
    alerting.ALERT_WEBHOOK_SECRET = ""
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    (request,) = webhook.received
    assert "X-Kendis-Signature" not in request.headers


def test_slack_text_escapes_what_slack_would_read_as_markup(alerting, connected_account, mocked_jira, webhook):
    ALMAccount.objects.filter(pk=connected_account.pk).update(name="R&D <Jira>")
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    assert webhook.bodies()[0]["text"].startswith("Jira connection broken: R&amp;D &lt;Jira&gt; (")
    assert webhook.bodies()[0]["account"] == "R&D <Jira>"


def test_a_redirect_is_not_followed(alerting, connected_account, mocked_jira, webhook):
    webhook.answer(302, headers={"Location": webhook.base_url + "/elsewhere"})
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)

    assert [request.path for request in webhook.received] == [WEBHOOK_PATH]
    alert = Alert.objects.get()
    assert alert.webhook_state == Delivery.PENDING
    assert "answered HTTP 302, a redirect" in alert.last_error


# --------------------------------------------------------------------------
# Failed deliveries: retried, never duplicated, given up in the end
# --------------------------------------------------------------------------


def test_a_failed_delivery_never_breaks_the_refresh_and_is_retried_once_without_duplicates(
        alerting, connected_account, mocked_jira, webhook, caplog):
    alerting.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    alerting.EMAIL_HOST, alerting.EMAIL_PORT = "127.0.0.1", free_port()  # the mail server is down
    alerting.EMAIL_HOST_PASSWORD = "SMTPPASSWORD-alerts-66aa"
    webhook.answer(500)
    jira_refuses_the_grant(mocked_jira)
    caplog.set_level(logging.INFO, logger="alm_accounts")

    assert refresh(connected_account).outcome is RefreshOutcome.NEEDS_REAUTHORIZATION
    connected_account.refresh_from_db()
    assert connected_account.status == Status.NEEDS_REAUTHORIZATION and connected_account.alert_open

    alert = Alert.objects.get()
    assert (alert.email_state, alert.webhook_state, alert.attempts) == (Delivery.PENDING, Delivery.PENDING, 1)
    assert "e-mail: the mail server could not be reached" in alert.last_error
    assert "webhook: 127.0.0.1 answered HTTP 500" in alert.last_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("e-mail was not delivered" in w for w in warnings)
    assert any("webhook was not delivered" in w for w in warnings)
    assert len(webhook.received) == 1

    # Not due yet: the next run right away sends nothing.
    assert services.deliver_pending().alerts == 0
    assert len(webhook.received) == 1

    # The mail server is back; the next run after the pause delivers both, once.
    alerting.EMAIL_BACKEND = LOCMEM
    counts = services.deliver_pending(now=timezone.now() + timedelta(minutes=6))
    assert (counts.alerts, counts.emails, counts.webhooks, counts.failed) == (1, 1, 1, 0)
    assert len(mail.outbox) == 1 and len(webhook.received) == 2
    alert.refresh_from_db()
    assert (alert.email_state, alert.webhook_state, alert.attempts, alert.last_error) == (
        Delivery.DELIVERED, Delivery.DELIVERED, 2, "")
    assert alert.delivered_at is not None

    for hours in (1, 30):  # later runs: nothing left to send
        assert services.deliver_pending(now=timezone.now() + timedelta(hours=hours)).alerts == 0
    assert len(mail.outbox) == 1 and len(webhook.received) == 2
    assert "SMTPPASSWORD" not in caplog.text and "WEBHOOKPATHSECRET" not in caplog.text


def test_a_channel_that_works_is_not_sent_again_while_the_other_is_retried(
        alerting, connected_account, mocked_jira, webhook):
    webhook.answer(503, times=2)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    services.deliver_pending(now=timezone.now() + timedelta(minutes=6))
    services.deliver_pending(now=timezone.now() + timedelta(minutes=20))

    assert len(mail.outbox) == 1
    assert len(webhook.received) == 3
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.DELIVERED)]


def test_a_failing_webhook_is_tried_once_per_run_not_once_per_alert(alerting, account, alice, mocked_jira,
                                                                    webhook):
    """A run does not wait for a dead receiver (or mail server) once per alert; the next run tries them all."""
    credential = connected_credential(account, alice)
    ALMAccount.objects.filter(pk=account.pk).update(
        access_token=ACCESS_TOKEN, refresh_token=REFRESH_TOKEN, status=Status.CONNECTED,
        token_expires_at=timezone.now() + timedelta(minutes=5))
    webhook.answer(500, times=3)
    jira_refuses_the_grant(mocked_jira)
    refresh(account)
    refresh(credential)
    assert len(webhook.received) == 2  # each alert's own first delivery

    services.deliver_pending(now=timezone.now() + timedelta(minutes=6))
    assert len(webhook.received) == 3  # the first due alert failed again: the second was not tried
    (skipped,) = [a for a in Alert.objects.all() if "not tried" in a.last_error]
    assert "webhook: not tried: it failed for an earlier alert of this run (127.0.0.1 answered HTTP 500)" == \
        skipped.last_error

    services.deliver_pending(now=timezone.now() + timedelta(minutes=20))
    assert len(webhook.received) == 5
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.DELIVERED)] * 2
    assert len(mail.outbox) == 2


def test_a_delivery_that_keeps_failing_is_given_up_after_the_bounded_time(
        alerting, connected_account, mocked_jira, webhook, caplog):
    alerting.EMAIL_BACKEND = f"{__name__}.RefusingSMTPBackend"
    webhook.answer(500, times=100)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    alert = Alert.objects.get()
    assert "e-mail: the mail server refused the login (SMTP 535)" in alert.last_error

    start = alert.created_at
    pauses = []
    for minutes in (6, 20, 60, 120, 200, 300):
        services.deliver_pending(now=start + timedelta(minutes=minutes))
        alert.refresh_from_db()
        pauses.append((alert.next_attempt_at - alert.last_attempt_at) / timedelta(minutes=1))
    assert pauses == [10, 20, 40, 60, 60, 60]  # doubled after each failure, at most an hour
    assert (alert.email_state, alert.webhook_state) == (Delivery.PENDING, Delivery.PENDING)

    caplog.set_level(logging.INFO, logger="alm_accounts")
    counts = services.deliver_pending(now=start + timedelta(hours=alerting.ALERT_GIVE_UP_HOURS, seconds=1))
    assert counts.given_up == 2
    alert.refresh_from_db()
    assert (alert.email_state, alert.webhook_state) == (Delivery.GIVEN_UP, Delivery.GIVEN_UP)
    given_up = [r for r in caplog.records if "given up" in r.getMessage()]
    assert len(given_up) == 2 and all(r.levelno == logging.ERROR for r in given_up)

    tried = len(webhook.received)
    assert services.deliver_pending(now=start + timedelta(days=3)).alerts == 0
    assert len(webhook.received) == tried and mail.outbox == []


def test_the_last_attempt_falls_on_the_give_up_time(alerting, connected_account, mocked_jira, webhook):
    webhook.answer(500, times=100)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    alert = Alert.objects.get()
    give_up = alert.created_at + timedelta(hours=alerting.ALERT_GIVE_UP_HOURS)

    services.deliver_pending(now=give_up - timedelta(minutes=6))  # its next pause (10 minutes) would pass it
    alert.refresh_from_db()
    assert alert.next_attempt_at == give_up and alert.webhook_state == Delivery.PENDING


def test_an_alert_raised_while_the_webhook_was_set_is_not_sent_once_it_is_removed(
        alerting, connected_account, mocked_jira, webhook):
    webhook.answer(500)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    alerting.ALERT_WEBHOOK_URL = ""
    services.deliver_pending(now=timezone.now() + timedelta(minutes=6))
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.NOT_NEEDED)]
    assert len(webhook.received) == 1


def test_every_refresher_run_delivers_what_is_due(alerting, connected_account, mocked_jira, webhook, run_command):
    webhook.answer(500)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    Alert.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # its retry is due

    assert run_command("-v", "0").code == 0

    assert len(webhook.received) == 2
    assert alert_states() == [("broken", Delivery.DELIVERED, Delivery.DELIVERED)]


# --------------------------------------------------------------------------
# Nothing secret is sent
# --------------------------------------------------------------------------


def test_no_token_or_secret_is_in_any_mail_or_webhook(alerting, connected_account, account, alice, mocked_jira,
                                                      webhook, admin_client):
    credential = connected_credential(account, alice)
    jira_refuses_the_grant(mocked_jira)
    refresh(connected_account)
    refresh(credential)
    get_auth_token(admin_client, connected_account, mocked_jira)
    assert len(mail.outbox) == 3 and len(webhook.received) == 3

    sent_text = "\n".join([m.message().as_string() for m in mail.outbox]
                          + [repr(r.headers) + r.body.decode() for r in webhook.received])
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET, "ACCESSTOKEN-3", "REFRESHTOKEN-3", "ALICE-access",
                   "ALICE-refresh", "AUTHCODE-alerts", WEBHOOK_SECRET, "WEBHOOKPATHSECRET"):
        assert secret not in sent_text, secret


# --------------------------------------------------------------------------
# The admin's Alerts list
# --------------------------------------------------------------------------


def test_the_alerts_list_shows_each_alert_and_its_delivery_read_only(alerting, connected_account, account, alice,
                                                                     mocked_jira, webhook, admin_client):
    webhook.answer(500)
    credential = connected_credential(account, alice)
    jira_refuses_the_grant(mocked_jira)
    refresh(credential)
    refresh(connected_account)

    url = reverse("admin:alm_accounts_alert_changelist")
    page = admin_client.get(url).content.decode()
    assert "Jira connection broken: Jira - Core Banking (alice)" in page
    assert "Jira connection broken: Jira - Core Banking" in page
    assert "The account" in page and "alice" in page
    assert "Delivered" in page and "Pending" in page and "answered HTTP 500" in page
    assert reverse("admin:alm_accounts_alert_add") not in page  # no "Add alert"

    pending = admin_client.get(url, {"webhook_state__exact": "pending"}).content.decode()
    assert "Core Banking (alice)" in pending and "1 alert" in pending
    assert "Core Banking (alice)" not in admin_client.get(url, {"event__exact": "recovered"}).content.decode()

    alert = Alert.objects.get(grant_owner="alice")
    change = admin_client.get(reverse("admin:alm_accounts_alert_change", args=[alert.pk]))
    assert change.status_code == 200
    assert "alice@bank.example" in change.content.decode() and 'name="_save"' not in change.content.decode()
    assert admin_client.get(reverse("admin:alm_accounts_alert_add")).status_code == 403
    assert admin_client.post(reverse("admin:alm_accounts_alert_delete", args=[alert.pk]),
                             {"post": "yes"}).status_code == 403
    assert Alert.objects.count() == 2


# --------------------------------------------------------------------------
# Send test alert (issue 19c)
# --------------------------------------------------------------------------


def send_test_alert(client, account):
    response = client.post(reverse("admin:alm_accounts_almaccount_send_test_alert", args=[account.pk]), follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def test_send_test_alert_reaches_every_channel_and_says_so_per_channel(alerting, connected_account, admin_client,
                                                                       webhook):
    connected_account.notify = ", ".join(NOTIFY)
    connected_account.save()
    page = admin_client.get(reverse("admin:alm_accounts_almaccount_change", args=[connected_account.pk]))
    assert b'name="send_test_alert"' in page.content

    reported = send_test_alert(admin_client, connected_account)

    assert reported == [f"Test alert, E-mail: sent (sent to {', '.join(NOTIFY)}).",
                        "Test alert, Webhook: sent (delivered to 127.0.0.1)."]
    (message,) = mail.outbox
    assert message.subject == "[Kendis] TEST alert, nothing is broken: Jira - Core Banking"
    assert message.to == NOTIFY and "Nothing is wrong" in message.body
    (request,) = webhook.received
    assert webhook.verify(request, WEBHOOK_SECRET)
    assert (request.json["event"], request.json["status"], request.json["id"]) == ("test", "Test", None)
    assert Alert.objects.count() == 0  # not an outbox row: nothing retried, nothing held back behind it


def test_send_test_alert_reports_what_failed_and_what_is_not_configured(alerting, connected_account, admin_client,
                                                                        webhook):
    alerting.ADMINS = []
    webhook.answer(500)
    assert send_test_alert(admin_client, connected_account) == [
        "Test alert, E-mail: not configured (no Notify list on this account, and no ADMINS: nobody gets alert "
        "mails).",
        "Test alert, Webhook: failed (127.0.0.1 answered HTTP 500)."]

    alerting.ADMINS = [("Ops", "oncall@example.com")]
    alerting.EMAIL_BACKEND = f"{__name__}.RefusingSMTPBackend"
    alerting.ALERT_WEBHOOK_URL = ""
    assert send_test_alert(admin_client, connected_account) == [
        "Test alert, E-mail: failed (the mail server refused the login (SMTP 535): check the user and password in "
        "EMAIL_URL).",
        "Test alert, Webhook: not configured (ALERT_WEBHOOK_URL is not set)."]
    assert mail.outbox == [] and Alert.objects.count() == 0


def test_send_test_alert_needs_the_change_permission(alerting, connected_account, client):
    client.force_login(staff_user("viewer", "view_almaccount"))
    response = client.post(reverse("admin:alm_accounts_almaccount_send_test_alert", args=[connected_account.pk]))
    assert response.status_code == 403
    assert mail.outbox == []
