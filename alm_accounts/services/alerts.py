"""Telling someone when a connection breaks, and when it works again: the decisions.

A grant turns *broken* when it needs re-authorization, or keeps failing (no
successful refresh for ALERT_FAILING_AFTER_MINUTES, or its access token has
expired and cannot be refreshed). One "broken" alert is raised then, and one
"recovered" alert when it works again: exactly one per transition, because
the decision is taken under the grant's row lock, in the transaction that
changes its status, and written as an outbox row (models.Alert). Delivery
(e-mail, webhook) happens after commit and is retried from the outbox by
every refresher run (services.alert_delivery); a failed delivery never
breaks a refresh.

A removed link (Jira refuses the account's client credentials, see
services.client_refused) is told once to the account's recipients, with what
to do in Jira, and once more when it works again; each person whose
credential stops with it is told to ask their Jira administrator.

Alerts hold words for administrators and a link, never a token, secret,
code or verifier.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .. import messages
from ..conf import app_settings
from ..kinds import kind_of
from ..models import Alert, ALMAccount, Grant, GrantStatus
from ..providers import provider_for
from ..validators import email_addresses
from .alert_delivery import ChannelReport, deliver_alert, send_test

# The reason of the alerts about a removed link (services.client_refused).
CLIENT_REFUSED = "client_refused"
# A service account's own credentials are refused (deleted, disabled, secret changed): broken at once.
SERVICE_ACCOUNT_REFUSED = "service_account_refused"


def failing_after() -> timedelta:
    return timedelta(minutes=app_settings.ALERT_FAILING_AFTER_MINUTES)


def after_failure(grant: Grant, *, now, status: str, message: str, reason: str = "") -> dict:
    """The grant's alert fields after a failed refresh (the caller writes them); raises the "broken" alert when due.

    Called under the grant's row lock, in the refresh's transaction. `reason` CLIENT_REFUSED: the account's
    client is refused (a removed link), broken at once; the account's own connection raises nothing of its own
    (its recipients were told about the link, services.client_refused.record).
    """
    failing_since = grant.failing_since or now
    reason = reason or broken_reason(grant, now=now, status=status, failing_since=failing_since)
    fields = {"failing_since": failing_since}
    if reason == CLIENT_REFUSED and not kind_of(grant).alerts_when_client_refused:
        return fields
    if reason and not grant.alert_open:
        raise_alert(grant, event=Alert.Event.BROKEN, reason=reason, detail=message, now=now)
        fields["alert_open"] = True
    return fields


def after_success(grant: Grant, *, now) -> dict:
    """The alert fields after a success (refresh, Get Auth Token, Connect); raises "recovered" if one was due."""
    if grant.alert_open:
        raise_alert(grant, event=Alert.Event.RECOVERED, reason="", detail="", now=now)
    _client_accepted_again(grant, now=now)
    return {"failing_since": None, "alert_open": False, **consent_ending(grant, now=now)}


def _client_accepted_again(grant: Grant, *, now) -> None:
    """A grant of an account whose client was refused works: the removed-link state ends, told once."""
    account = grant.grant_account
    if account.client_refused_at is None:  # as read under the grant's lock: no statement in the usual case
        return
    cleared = ALMAccount.objects.filter(pk=account.pk, client_refused_at__isnull=False).update(
        client_refused_at=None, client_checked_at=None)
    account.client_refused_at = account.client_checked_at = None
    if cleared:
        raise_alert(account, event=Alert.Event.RECOVERED, reason=CLIENT_REFUSED, detail="", now=now)


def consent_ending(grant: Grant, *, now) -> dict:
    """Jira Cloud ends every grant 365 days after its consent, refreshed or not: one warning, 14 days before.

    Decided under the grant's row lock with each success; a new consent (store_new_grant clears
    reconsent_warned_at and connected_at is now) starts a new year.
    """
    provider = provider_for(grant.grant_account)
    # A service account's connection has no consent to end (providers.service_accounts).
    lifetime = None if kind_of(grant).by_client_credentials(grant) else provider.consent_lifetime
    if lifetime is None or grant.connected_at is None or grant.reconsent_warned_at is not None:
        return {}
    ends = grant.connected_at + lifetime
    if now < ends - provider.consent_warning:
        return {}
    raise_alert(grant, event=Alert.Event.CONSENT_ENDING, reason="consent_ending",
                detail=f"{timezone.localtime(ends):%Y-%m-%d %H:%M %Z}", now=now)
    return {"reconsent_warned_at": now}


def broken_reason(grant: Grant, *, now, status: str, failing_since) -> str:
    if status == GrantStatus.NEEDS_REAUTHORIZATION:
        return "needs_reauthorization"
    if now - failing_since >= failing_after():
        return "failing"
    if grant.token_expires_at is not None and grant.token_expires_at <= now:
        return "expired"
    return ""


def raise_alert(grant: Grant, *, event: str, reason: str, detail: str, now) -> Alert:
    account = grant.grant_account
    person = grant.grant_owner
    who = f"{account.name} ({person})" if person else account.name
    subject, body = _words(grant, event=event, reason=reason, detail=detail, who=who, now=now)
    recipients = recipients_for(grant, reason=reason)
    alert = Alert.objects.create(
        created_at=now,
        event=event,
        reason=reason,
        account=account,
        account_name=account.name,
        credential=kind_of(grant).credential(grant),
        grant_owner=person,
        subject=subject[:255],
        message=body,
        link=link_for(grant),
        recipients="\n".join(recipients),
        email_state=Alert.Delivery.PENDING if recipients else Alert.Delivery.NOT_NEEDED,
        webhook_state=Alert.Delivery.PENDING if app_settings.ALERT_WEBHOOK_URL else Alert.Delivery.NOT_NEEDED,
        next_attempt_at=now,
    )
    # Sent once the status change is committed (never for one rolled back), that alert only; a failure is
    # retried from the outbox by the refresher runs (services.alert_delivery), and never raised here.
    transaction.on_commit(lambda: deliver_alert(alert.pk), robust=True)
    return alert


def send_test_alert(*, account: ALMAccount, actor: str) -> list[ChannelReport]:
    """Send a clearly marked test through every channel the account's alerts use, now, and say per channel what
    happened: an admin proves that alerts reach someone before a connection breaks."""
    return send_test(account=account, actor=actor, recipients=recipients_for(account))


def recipients_for(grant: Grant, *, reason: str = "") -> list[str]:
    """The account's Notify addresses, else ADMINS; for a person's credential, that person (and the account's
    recipients when the account refuses people without their own connection: their work stops; but not about a
    removed link, which they were told about once for the whole account)."""
    account: ALMAccount = grant.grant_account
    for_account = email_addresses(account.notify) or [email for _, email in settings.ADMINS]
    return _unique(kind_of(grant).recipients(grant, for_account=for_account, client_refused=reason == CLIENT_REFUSED))


def link_for(grant: Grant) -> str:
    return app_settings.PUBLIC_BASE_URL + kind_of(grant).link(grant)


def _unique(addresses: list[str]) -> list[str]:
    seen, unique = set(), []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _words(grant: Grant, *, event: str, reason: str, detail: str, who: str, now) -> tuple[str, str]:
    person = grant.grant_owner
    where, button = messages.where_to_reconnect(grant)
    if event == Alert.Event.CONSENT_ENDING:
        return (
            f"Jira Cloud consent ends soon: {who}",
            f"Atlassian ends every Jira Cloud grant 365 days after its consent, however often it is refreshed. "
            f"The consent of {who} ends on {detail}; after that the connection stops working.\n\n"
            f"What to do: before then, open {where} and click {button}. The new consent keeps the connection "
            "working for another year.",
        )
    if reason == CLIENT_REFUSED and not person:
        if event == Alert.Event.RECOVERED:
            return (
                f"Jira accepts the application link again: {who}",
                f"Jira accepts the Client ID and Client Secret of {who} again (at "
                f"{timezone.localtime(now):%Y-%m-%d %H:%M %Z}): its connections are refreshed again. People whose "
                "connection stopped are told when theirs works again.",
            )
        return (f"Jira no longer accepts the application link: {who}",
                f"{detail}\n\nUntil then, the people connected through this account are told to ask their Jira "
                "administrator.")
    if event == Alert.Event.RECOVERED:
        return (
            f"Jira connection working again: {who}",
            f"The Jira connection {who} works again (at {timezone.localtime(now):%Y-%m-%d %H:%M %Z}). Nothing to do.",
        )
    if reason in (CLIENT_REFUSED, SERVICE_ACCOUNT_REFUSED):  # the detail says what happened and what to do
        return f"Jira connection broken: {who}", detail
    if reason == "needs_reauthorization":
        happened = "Jira no longer accepts this connection: it needs to be authorized again."
        todo = (f"Open {where} and click {button}." + " "
                + provider_for(grant.grant_account).lifetime_hint)
    elif reason == "expired":
        happened = "Its access token has expired and could not be refreshed: calls to Jira with it fail."
        todo = "Check that Jira is reachable from this server and that its incoming application link still exists."
    else:
        minutes = app_settings.ALERT_FAILING_AFTER_MINUTES
        happened = f"Its token could not be refreshed for more than {minutes} minutes."
        todo = "Check that Jira is reachable from this server and that its incoming application link still exists."
    body = f"{happened}\n\nLast error: {detail}\n\nWhat to do: {todo}"
    return f"Jira connection broken: {who}", body
