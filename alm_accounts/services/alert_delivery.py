"""Delivering alerts (the outbox rows services.alerts writes, models.Alert): e-mail, and an optional webhook.

When:
- right after the transaction that raised an alert commits: services.alerts.raise_alert registers
  `deliver_alert(<its id>)` with transaction.on_commit (that alert's channels only, so it stays cheap);
- at the end of every refresher run: `deliver_pending()` sends whatever is due, such as a delivery that
  failed before and waits for its retry.

In order, per connection and channel: the alerts of one grant (one account's own connection, or one person's
credential: same account name and grant owner) are delivered on each channel in the order they were raised. An
alert is not sent on a channel while an older alert of the same grant is still pending there (it waits, which is
not a failure); a channel that was given up no longer holds the newer ones back. A "working again" raised while
its "broken" still waits (the mail server was down during the outage) makes that "broken" due at once (unless
it is being sent or was tried less than MIN_LEASE ago): both are then delivered, in order, by the delivery after
the commit. So a person gets both messages, the older first, each saying when it was raised; never the recovery
alone followed by a stale "broken". Each channel keeps its own order: a webhook that works does not wait for a
mail server that does not.

Never twice while everything runs, with any number of runners: one alert at a time is *claimed* in a short
transaction of its own (SELECT ... FOR UPDATE SKIP LOCKED of one due row; the attempt is counted and
next_attempt_at moved to the retry time, at least MIN_LEASE ahead: a lease) that is committed before anything
is sent, so no other runner sees the alert as due while it is being sent; no row lock is held while sending.
The result is written afterwards. A process killed between sending and writing the result sends again at the
retry time: at least once.

Each channel has its own state (pending, delivered, given up); a channel that failed is tried again with a
growing pause (5, 10, 20, 40 minutes, then hourly: the refresher runs every few minutes) until
ALERT_GIVE_UP_HOURS after the alert was raised, then given up (logged at ERROR). Within one call, a channel
that failed (the mail server is down) is not tried again for the other alerts: they wait for the next run,
so a run takes one timeout per channel, not one per alert.

A failure is logged and kept in last_error in words, never with a secret: not the webhook URL's path (a Slack
webhook URL carries its secret there), not the mail server's password. Nothing here raises into the caller:
a refresh never breaks because a mail server is down.

The webhook (ALERT_WEBHOOK_URL) gets a JSON POST:

    {"id", "event", "reason", "account", "grant_owner", "status", "message", "link", "created_at", "text"}

`event` is broken, recovered, consent_ending, or test (Send test alert on the account's page: `id` null);
`grant_owner` is whose grant it is (blank: the account's own connection, else the person's user name),
`status` the grant's state in words, `text` a one-line summary with the link, which Slack-compatible incoming
webhooks (Slack, Mattermost, Rocket.Chat) show as it is. With ALERT_WEBHOOK_SECRET set, the request carries

    X-Kendis-Timestamp: <Unix seconds>
    X-Kendis-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the secret>

The timestamp is signed so that a receiver can refuse a replayed request: recompute the HMAC over the
timestamp header, a dot and the raw body, compare in constant time, and refuse a timestamp more than five
minutes away from its clock. Redirects are not followed (a 3xx is a failure: set the final address); any 2xx
is delivered. Timeouts are explicit. Proxies come from the usual HTTPS_PROXY / NO_PROXY environment; the
system's trusted CAs verify the certificate (SSL_CERT_FILE names another bundle).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import certifi
from django.conf import settings
from django.core import mail
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..conf import app_settings
from ..models import Alert

log = logging.getLogger("alm_accounts.services.alerts")

Delivery = Alert.Delivery
SUBJECT_PREFIX = "[Kendis] "
WEBHOOK_TIMEOUT = 10.0  # seconds, for connecting and for each read of the answer
MAIL_TIMEOUT = 15.0  # seconds, for the mail server (unless settings.EMAIL_TIMEOUT says otherwise)
FIRST_RETRY = timedelta(minutes=5)  # then doubled after each failed attempt ...
LONGEST_RETRY = timedelta(hours=1)  # ... up to this
# The claim is also a lease: no other runner takes the alert before this, even at the give-up deadline. Far
# longer than sending one alert can take (the mail and webhook timeouts above).
MIN_LEASE = timedelta(minutes=5)
STATUS_WORDS = {
    "needs_reauthorization": "Needs re-authorization",
    "failing": "Failing",
    "expired": "Access token expired",
    "client_refused": "Link removed or secret changed",
}


@dataclass
class DeliveryCounts:
    """What one deliver_pending / deliver_alert call did."""

    alerts: int = 0  # alerts taken for delivery
    emails: int = 0  # e-mails sent
    webhooks: int = 0  # webhook calls answered 2xx
    failed: int = 0  # deliveries that failed and will be retried
    given_up: int = 0  # deliveries that failed for the last time
    waiting: int = 0  # deliveries held back behind an older alert of the same grant (sent after it)

    def __str__(self) -> str:
        if not self.alerts:
            return "no alert to deliver"
        parts = [f"{self.emails} e-mail{'s' if self.emails != 1 else ''} sent",
                 f"{self.webhooks} webhook call{'s' if self.webhooks != 1 else ''} delivered"]
        if self.failed:
            parts.append(f"{self.failed} failed (retried later)")
        if self.given_up:
            parts.append(f"{self.given_up} given up")
        if self.waiting:
            parts.append(f"{self.waiting} waiting for an older alert")
        return f"{self.alerts} alert{'s' if self.alerts != 1 else ''}: " + ", ".join(parts)


class DeliveryFailed(Exception):
    """A channel could not deliver; the message says why in words and holds no secret.

    `channel_down`: the mail server or the webhook failed as such (unreachable, timed out, refused the login,
    answered an error), not this one alert (its recipients refused): the other alerts of the same run would
    wait for it in vain, so they are not tried on that channel until the next run.
    """

    def __init__(self, message: str, *, channel_down: bool = True):
        super().__init__(message)
        self.channel_down = channel_down


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def deliver_pending(*, now: datetime | None = None, limit: int = 100) -> DeliveryCounts:
    """Send every alert whose delivery is due (at most `limit`); never raises."""
    return _deliver(now=now or timezone.now(), limit=limit, alert_id=None)


# deliver_alert sends the alert just raised and the older alerts of its grant it must not overtake: a few.
SAME_GRANT_LIMIT = 10


def deliver_alert(alert_id: int) -> DeliveryCounts:
    """Send an alert just raised (transaction.on_commit of services.alerts.raise_alert), after the older alerts of
    the same grant still pending (see the module's docstring); never raises."""
    return _deliver(now=timezone.now(), limit=SAME_GRANT_LIMIT, alert_id=alert_id)


def _deliver(*, now: datetime, limit: int, alert_id: int | None) -> DeliveryCounts:
    counts = DeliveryCounts()
    down: dict[str, str] = {}  # channel -> why it failed for an earlier alert of this call
    for _ in range(limit):
        try:
            alert = _claim(now=now, alert_id=alert_id)
        except Exception as exc:  # noqa: BLE001 - a database that is down must not break the refresh that called us
            log.warning("Alerts could not be taken for delivery (%s); the next refresher run tries again.",
                        type(exc).__name__)
            break
        if alert is None:
            break
        counts.alerts += 1
        try:
            _send_and_record(alert, now=now, counts=counts, down=down)
        except Exception as exc:  # noqa: BLE001 - same: one alert's trouble never reaches the caller
            # Whatever was sent is sent again after the retry time: at least once, as the module says.
            log.warning("Alert %s: its delivery could not be recorded (%s); it is tried again after %s.",
                        alert.pk, type(exc).__name__, _when(alert.next_attempt_at))
    return counts


@dataclass(frozen=True)
class ChannelReport:
    """What a test alert did on one channel, in the admin's words."""

    channel: str  # "E-mail" or "Webhook"
    outcome: str  # "sent", "not configured" or "failed"
    detail: str


def send_test(*, account, actor: str, recipients: list[str]) -> list[ChannelReport]:
    """Send a clearly marked test to `recipients` (who the account's alerts reach: services.alerts decides) and
    the webhook, now, and say per channel what happened (services.alerts.send_test_alert).

    Not an outbox row: nothing is retried, and a failed test never holds back (see "In order") a real alert.
    """
    now = timezone.now()
    alert = Alert(
        created_at=now, event="test", reason="test", account_name=account.name, grant_owner="",
        subject=f"TEST alert, nothing is broken: {account.name}",
        message=(f"This is a test of the alerts of the ALM account {account.name}, sent by {actor} from its page. "
                 "Nothing is wrong with its connection to Jira. When a connection breaks or works again, an alert "
                 "like this one reaches the same recipients: the account's Notify list (else the administrators "
                 "of this deployment), and the alert webhook."),
        link=app_settings.PUBLIC_BASE_URL + account.get_admin_url(), recipients="\n".join(recipients),
    )
    reports = []
    for channel, configured, not_configured, send, sent in (
        ("E-mail", bool(recipients), "no Notify list on this account, and no ADMINS: nobody gets alert mails",
         _send_email, f"sent to {', '.join(recipients)}"),
        ("Webhook", bool(app_settings.ALERT_WEBHOOK_URL), "ALERT_WEBHOOK_URL is not set", _send_webhook,
         f"delivered to {urlsplit(app_settings.ALERT_WEBHOOK_URL or '').hostname or ''}"),
    ):
        if not configured:
            reports.append(ChannelReport(channel, "not configured", not_configured))
            continue
        try:
            send(alert)
        except DeliveryFailed as exc:
            reports.append(ChannelReport(channel, "failed", str(exc)))
            continue
        reports.append(ChannelReport(channel, "sent", sent))
    log.info("Test alert of %s sent by %s: %s", account.name, actor,
             "; ".join(f"{r.channel} {r.outcome}" for r in reports))
    return reports


# --------------------------------------------------------------------------
# Claiming: the attempt is written before anything is sent
# --------------------------------------------------------------------------


def _same_grant(**filters):
    """The alerts of the grant of the outer query's alert (for Exists): same account name, same grant owner."""
    return Alert.objects.filter(account_name=OuterRef("account_name"), grant_owner=OuterRef("grant_owner"), **filters)


def _due(now: datetime) -> Q:
    """Due: pending on a channel where no older alert of the same grant still waits, and its time has come; or
    a newer alert of its grant waits behind it (then at once, unless it was tried less than MIN_LEASE ago)."""
    free = Q()
    for state_field in ("email_state", "webhook_state"):
        free |= Q(**{state_field: Delivery.PENDING}) & ~Exists(
            _same_grant(pk__lt=OuterRef("pk"), **{state_field: Delivery.PENDING}))
    timing = (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
              | (Q(last_attempt_at__lte=now - MIN_LEASE) & Exists(_same_grant(pk__gt=OuterRef("pk")))))
    return free & timing


def _claim(*, now: datetime, alert_id: int | None) -> Alert | None:
    """The next due alert, its attempt counted and its retry time set: committed before it is sent.

    One at a time, so that the lease (MIN_LEASE) only has to cover sending one alert. With `alert_id`: that
    alert, or an older one of the same grant that it waits for (the oldest first).
    """
    # durable: committed here, before sending, even if a caller forgot to call us outside its transaction.
    with transaction.atomic(durable=True):
        queryset = Alert.objects.select_for_update(skip_locked=True).filter(_due(now))
        if alert_id is not None:
            grant = Alert.objects.filter(pk=alert_id).values("account_name", "grant_owner").first()
            if grant is None:
                return None
            alert = queryset.filter(pk__lte=alert_id, **grant).order_by("pk").first()
        else:
            alert = queryset.order_by("next_attempt_at", "pk").first()
        if alert is not None:
            alert.attempts += 1
            alert.last_attempt_at = now
            alert.next_attempt_at = _retry_time(alert, now=now)
            alert.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    return alert


def _retry_time(alert: Alert, *, now: datetime) -> datetime:
    pause = min(FIRST_RETRY * 2 ** min(alert.attempts - 1, 20), LONGEST_RETRY)
    # The last try falls on the give-up time (a failure then gives up), never sooner than the lease allows.
    return max(min(now + pause, give_up_time(alert)), now + MIN_LEASE)


def _when(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def give_up_time(alert: Alert) -> datetime:
    return alert.created_at + timedelta(hours=app_settings.ALERT_GIVE_UP_HOURS)


# --------------------------------------------------------------------------
# Sending, then recording the result
# --------------------------------------------------------------------------


def _send_and_record(alert: Alert, *, now: datetime, counts: DeliveryCounts, down: dict[str, str]) -> None:
    fields: dict = {}
    errors: list[str] = []
    for channel, state_field, send in (("e-mail", "email_state", _send_email),
                                       ("webhook", "webhook_state", _send_webhook)):
        if getattr(alert, state_field) != Delivery.PENDING:
            continue
        older = _older_pending(alert, state_field)
        if older is not None:
            # Never overtake: this channel waits until the older alert is delivered (or given up) on it.
            errors.append(f"{channel}: waits for the older alert {older} of the same connection")
            counts.waiting += 1
            continue
        try:
            if channel in down:
                # Bounded runs: one timeout per channel and run, not one per alert while a mail server is down.
                raise DeliveryFailed(f"not tried: it failed for an earlier alert of this run ({down[channel]})")
            state = send(alert)
        except DeliveryFailed as exc:
            if exc.channel_down and channel not in down:
                down[channel] = str(exc)
            errors.append(f"{channel}: {exc}")
            if now >= give_up_time(alert):
                fields[state_field] = Delivery.GIVEN_UP
                counts.given_up += 1
                log.error("Alert %s (%s): the %s was not delivered within %s hours; given up. Last failure: %s",
                          alert.pk, alert.subject, channel, app_settings.ALERT_GIVE_UP_HOURS, exc)
            else:
                counts.failed += 1
                log.warning("Alert %s (%s): the %s was not delivered (%s); tried again after %s.",
                            alert.pk, alert.subject, channel, exc, _when(alert.next_attempt_at))
            continue
        fields[state_field] = state
        if state == Delivery.DELIVERED:
            if channel == "e-mail":
                counts.emails += 1
            else:
                counts.webhooks += 1
    states = [fields.get("email_state", alert.email_state), fields.get("webhook_state", alert.webhook_state)]
    if Delivery.PENDING not in states:
        fields["next_attempt_at"] = None
        if Delivery.DELIVERED in states and Delivery.GIVEN_UP not in states:
            fields["delivered_at"] = timezone.now()
    fields["last_error"] = "; ".join(errors)[:1000]
    Alert.objects.filter(pk=alert.pk).update(**fields)


def _older_pending(alert: Alert, state_field: str) -> int | None:
    """The oldest alert of the same grant still pending on this channel, raised before `alert` (its id)."""
    return (Alert.objects.filter(account_name=alert.account_name, grant_owner=alert.grant_owner, pk__lt=alert.pk,
                                 **{state_field: Delivery.PENDING}).order_by("pk").values_list("pk", flat=True).first())


def _send_email(alert: Alert) -> str:
    recipients = [line.strip() for line in alert.recipients.splitlines() if line.strip()]
    if not recipients:
        return Delivery.NOT_NEEDED
    message = mail.EmailMessage(
        subject=SUBJECT_PREFIX + " ".join(alert.subject.split()),  # one line: a header never spans lines
        body=email_body(alert),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    try:
        connection = mail.get_connection(fail_silently=False,
                                         timeout=settings.EMAIL_TIMEOUT or MAIL_TIMEOUT)
        sent = connection.send_messages([message])
    except Exception as exc:  # noqa: BLE001 - any backend, any failure: in words, retried
        raise DeliveryFailed(_mail_failure(exc),
                             channel_down=not isinstance(exc, smtplib.SMTPRecipientsRefused)) from None
    if not sent:
        raise DeliveryFailed("the mail backend sent nothing")
    return Delivery.DELIVERED


def email_body(alert: Alert) -> str:
    return (
        f"{alert.message}\n\n"
        f"Raised: {_when(alert.created_at)}\n"
        f"Open: {alert.link}\n\n"
        "-- \n"
        f"Kendis integration, {app_settings.PUBLIC_BASE_URL}\n"
        "You receive this as a recipient of the ALM account's alerts (its Notify list, else the administrators "
        "of this deployment), or because the connection is your own.\n"
    )


def _mail_failure(exc: Exception) -> str:
    # Words from the exception's type and the server's reply code only: never the text of an exception that
    # might quote a setting.
    code = getattr(exc, "smtp_code", None)
    reply = f" (SMTP {code})" if code else ""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"the mail server refused the login{reply}: check the user and password in EMAIL_URL"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"the mail server refused the sender DEFAULT_FROM_EMAIL{reply}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the mail server refused every recipient"  # this alert's: see _send_email
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return "the mail server closed the connection; check EMAIL_URL (host, port, TLS)"
    if isinstance(exc, smtplib.SMTPException):
        return f"the mail server refused the message ({type(exc).__name__}{reply})"
    if isinstance(exc, ssl.SSLError):
        return "TLS with the mail server failed; check EMAIL_URL (port, tls or ssl)"
    if isinstance(exc, TimeoutError):
        return "the mail server did not answer in time"
    if isinstance(exc, OSError):
        return f"the mail server could not be reached ({type(exc).__name__}); check EMAIL_URL"
    return f"the mail backend failed ({type(exc).__name__})"


def webhook_payload(alert: Alert) -> dict:
    status = "Connected" if alert.event == Alert.Event.RECOVERED else STATUS_WORDS.get(alert.reason, "Failing")
    if alert.event == "test":
        status = "Test"
    summary = f"{alert.subject} ({status})."
    return {
        "id": alert.pk,
        "event": alert.event,
        "reason": alert.reason,
        "account": alert.account_name,
        "grant_owner": alert.grant_owner,
        "status": status,
        "message": alert.message,
        "link": alert.link,
        "created_at": alert.created_at.isoformat(),
        # Slack's text format: &, < and > are escaped; a bare URL becomes a link everywhere.
        "text": _slack_escape(f"{summary} {alert.link}" if alert.link else summary),
    }


def _slack_escape(text: str) -> str:
    return " ".join(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").split())


def signature_headers(body: bytes, *, secret: str, timestamp: int) -> dict[str, str]:
    """The headers that let a receiver check the body came from us, now: see the module's docstring."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Kendis-Timestamp": str(timestamp), "X-Kendis-Signature": f"sha256={digest}"}


def _send_webhook(alert: Alert) -> str:
    url = app_settings.ALERT_WEBHOOK_URL
    if not url:
        return Delivery.NOT_NEEDED  # the webhook was switched off since the alert was raised
    host = urlsplit(url).hostname or "the webhook host"
    body = json.dumps(webhook_payload(alert), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Kendis-Integration-Alerts/1"}
    if app_settings.ALERT_WEBHOOK_SECRET:
        headers.update(signature_headers(body, secret=app_settings.ALERT_WEBHOOK_SECRET, timestamp=int(time.time())))
    # Only http(s): settings refuse any other ALERT_WEBHOOK_URL, and _opener has no other handler.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener().open(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = response.status  # the answer's body is not read: nothing in it is needed
    except TimeoutError:
        raise DeliveryFailed(f"{host} did not answer within {WEBHOOK_TIMEOUT:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise DeliveryFailed(f"{host} did not answer within {WEBHOOK_TIMEOUT:g} s") from None
        if isinstance(reason, ssl.SSLError):
            raise DeliveryFailed(f"TLS with {host} failed (is its certificate trusted?)") from None
        raise DeliveryFailed(f"{host} could not be reached ({type(reason).__name__})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise DeliveryFailed(f"the connection to {host} failed ({type(exc).__name__})") from None
    if 200 <= status < 300:
        return Delivery.DELIVERED
    if 300 <= status < 400:
        raise DeliveryFailed(f"{host} answered HTTP {status}, a redirect: redirects are not followed, set "
                             "ALERT_WEBHOOK_URL to the final address")
    raise DeliveryFailed(f"{host} answered HTTP {status}")


def _opener() -> urllib.request.OpenerDirector:
    """http(s) only, proxies from the environment, no redirect handler (a 3xx comes back as it is), and no
    error processor (any status comes back as a response). urllib logs nothing, so the URL's path, where a
    Slack webhook keeps its secret, never reaches a log."""
    opener = urllib.request.OpenerDirector()
    context = ssl.create_default_context()  # the system's trusted CAs (SSL_CERT_FILE adds a company CA) ...
    if not context.cert_store_stats()["x509_ca"]:
        context.load_verify_locations(certifi.where())  # ... or, on a system without any, those requests uses
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(context=context)):
        opener.add_handler(handler)
    return opener
