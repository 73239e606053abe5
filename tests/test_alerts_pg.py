"""Exactly one alert per transition, and each sent exactly once, with concurrent runners on PostgreSQL (issue 12).

Four runners (threads, each with its own database connection, as four hosts
running the refresher) refresh the same grants at the same time against a
fake Jira on a real socket; meanwhile a fifth keeps delivering the outbox,
racing the deliveries that follow each commit. Then four runners deliver a
backlog of alerts at once. Mail goes to Django's `locmem` outbox, the webhook
to a local server that checks each signature.

PostgreSQL only (row locks, SKIP LOCKED). Without it these tests skip
locally; with CI=true they fail.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import connections
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import Alert, ALMAccount, ALMCredential
from alm_accounts.services import GrantRef, RefreshOutcome
from tests.doubles.fake_jira import TOKEN_PATH
from tests.doubles.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("postgresql_only"), pytest.mark.django_db(transaction=True)]

CLIENT_ID, CLIENT_SECRET = "pg-alerts-client", "CLIENTSECRET-pgalerts-8e1d"
WEBHOOK_SECRET = "WEBHOOKSECRET-pg-2c9f"
RUNNERS = 4
WAIT_SECONDS = 60  # only reached when something is broken
Delivery = Alert.Delivery


@pytest.fixture
def webhook(settings):
    with WebhookReceiver() as receiver:
        settings.ADMINS = [("Ops", "ops@example.com")]
        settings.ALERT_WEBHOOK_URL = receiver.base_url + "/hooks/alerts"
        settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
        yield receiver


def grants_at(fake, *, accounts: int, people: int, alive: bool, **fields) -> list[GrantRef]:
    """Connected grants (each account's own, and `people` persons' on each), known to the fake Jira.

    alive=False: Jira has dropped them (the refresh token we hold is refused with invalid_grant).
    """
    refs = []
    users = [User.objects.create_user(f"person{p}", f"person{p}@example.com") for p in range(people)]
    now = timezone.now()
    common = {"status": ALMAccount.Status.CONNECTED, "token_scope": "ADMIN", "token_expires_at": now,
              "connected_at": now, **fields}
    for a in range(accounts):
        account = ALMAccount.objects.create(
            name=f"Jira {a}", base_url=fake.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            client_secret_base_url=fake.base_url, notify=f"team{a}@example.com", **common)
        grants = [account] + [ALMCredential.objects.create(account=account, user=user, connected_as_name=user.username,
                                                           **common) for user in users]
        for grant in grants:
            key = f"{a}-{grant.grant_owner or 'account'}"
            access, refresh = fake.add_grant(key, redirect_uri=account.callback_url, client_id=CLIENT_ID,
                                             client_secret=CLIENT_SECRET)
            grant.access_token, grant.refresh_token = (access, refresh) if alive else (f"gone-{key}", f"gone-{key}")
            grant.save()
            refs.append(GrantRef.of(grant))
    return refs


def run_in_threads(targets) -> list:
    """Start every target at the same moment, each in its own thread with its own database connection."""
    start = threading.Barrier(len(targets))
    errors = []

    def run(target):
        try:
            start.wait(WAIT_SECONDS)
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a runner never finished"
    return errors


def refreshing_runners(refs: list[GrantRef], results: list, *, skip_locked_every_other: bool):
    def runner(n: int):
        def refresh_all():
            order = list(refs)
            random.Random(n).shuffle(order)  # noqa: S311 - an order, not a secret
            for ref in order:
                results.append(services.refresh_grant(grant=ref, actor=f"runner {n}",
                                                      skip_locked=skip_locked_every_other and n % 2 == 1))
        return refresh_all

    return [runner(n) for n in range(RUNNERS)]


def refresh_while_delivering(refreshers) -> list:
    """The refreshing runners, and a fifth one delivering the outbox over and over meanwhile (racing the
    deliveries that follow each refresh's commit); the errors any of them raised."""
    done = threading.Event()
    errors: list = []

    def deliver():
        while not done.is_set():
            services.deliver_pending(limit=5)
            time.sleep(0.01)
        services.deliver_pending()

    delivering = threading.Thread(target=lambda: errors.extend(run_in_threads([deliver])), daemon=True)
    delivering.start()
    try:
        errors.extend(run_in_threads(refreshers))
    finally:
        done.set()
        delivering.join(WAIT_SECONDS)
    assert not delivering.is_alive(), "the delivering runner never finished"
    return errors


def assert_each_alert_sent_exactly_once(webhook, alerts: list[Alert]):
    assert all(webhook.verify(request, WEBHOOK_SECRET) for request in webhook.received)
    assert sorted(body["id"] for body in webhook.bodies()) == sorted(alert.pk for alert in alerts)
    assert sorted(message.subject for message in mail.outbox) == sorted(f"[Kendis] {a.subject}" for a in alerts)
    assert all((a.email_state, a.webhook_state) == (Delivery.DELIVERED, Delivery.DELIVERED) for a in alerts)


def test_grants_that_turn_needs_reauthorization_under_four_runners_raise_one_alert_each(fake_jira, webhook):
    fake_jira.latency = 0.2  # each refresh holds its row lock a while: the others wait for it, or skip it
    refs = grants_at(fake_jira, accounts=3, people=2, alive=False)
    results: list = []

    errors = refresh_while_delivering(refreshing_runners(refs, results, skip_locked_every_other=True))

    assert errors == [], errors
    # Each grant reached Jira once (under its lock), was refused, and told about once.
    outcomes = Counter(result.outcome for result in results)
    assert outcomes[RefreshOutcome.NEEDS_REAUTHORIZATION] == len(refs)
    assert len(fake_jira.calls_to(TOKEN_PATH)) == len(refs)
    alerts = list(Alert.objects.order_by("pk"))
    assert Counter((a.account_name, a.grant_owner) for a in alerts) == Counter(
        {(f"Jira {a}", owner): 1 for a in range(3) for owner in ("", "person0", "person1")})
    assert {(a.event, a.reason) for a in alerts} == {("broken", "needs_reauthorization")}
    assert_each_alert_sent_exactly_once(webhook, alerts)
    # A person is told about their own credential, the account's team about the account's.
    assert sorted(tuple(m.to) for m in mail.outbox) == sorted(
        [(f"team{a}@example.com",) for a in range(3)] + [(f"person{p}@example.com",) for p in range(2)] * 3)


def test_grants_that_keep_failing_under_four_runners_raise_one_alert_each(fake_jira, webhook, settings):
    settings.JIRA_RETRY_BACKOFF = []  # one token request per refresh
    refs = grants_at(fake_jira, accounts=3, people=1, alive=True,
                     failing_since=timezone.now() - timedelta(minutes=settings.ALERT_FAILING_AFTER_MINUTES + 5))
    for _ in range(RUNNERS * len(refs)):
        fake_jira.html(TOKEN_PATH, 503, "<html>Service Unavailable</html>")
    results: list = []

    errors = refresh_while_delivering(refreshing_runners(refs, results, skip_locked_every_other=False))

    assert errors == [], errors
    # Every runner refreshed every grant, failed, and took the decision under the lock: one alert per grant.
    assert Counter(result.outcome for result in results) == {RefreshOutcome.FAILED: RUNNERS * len(refs)}
    assert len(fake_jira.calls_to(TOKEN_PATH)) == RUNNERS * len(refs)
    alerts = list(Alert.objects.order_by("pk"))
    assert len(alerts) == len(refs)
    assert len({(a.account_name, a.grant_owner) for a in alerts}) == len(refs)
    assert {(a.event, a.reason) for a in alerts} == {("broken", "failing")}
    assert_each_alert_sent_exactly_once(webhook, alerts)


def test_four_runners_delivering_a_backlog_send_each_alert_exactly_once(webhook):
    now = timezone.now()
    account = ALMAccount.objects.create(name="Jira backlog", base_url="https://jira.example.com")
    Alert.objects.bulk_create([
        # 40 grants' alerts (one grant's are delivered one after the other, in order: issue 23)
        Alert(created_at=now, event=Alert.Event.BROKEN, reason="failing", account=account, grant_owner=f"person{n}",
              account_name=account.name, subject=f"Jira connection broken: backlog {n}", message="m",
              link="http://testserver/x", recipients="ops@example.com", email_state=Delivery.PENDING,
              webhook_state=Delivery.PENDING, next_attempt_at=now - timedelta(minutes=5))
        for n in range(40)])
    webhook.hold(until_in_flight=2)  # the first request waits for another runner's: proof they overlapped

    def runner():
        while services.deliver_pending(limit=3).alerts:
            pass

    errors = run_in_threads([runner] * RUNNERS)

    assert errors == [], errors
    assert webhook.max_in_flight >= 2
    alerts = list(Alert.objects.order_by("pk"))
    assert_each_alert_sent_exactly_once(webhook, alerts)
    assert {a.attempts for a in alerts} == {1}
