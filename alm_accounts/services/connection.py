"""The admin's connection buttons and what ends a connection.

Test connection; and the three ways a connection ends: Disconnect, an edit of
the Jira base URL or Client ID (the tokens belong to the old Jira's link), and
deleting the account.

Every ending follows one rule (decisions under the lock, side effects after
commit): the tokens are taken off the locked row and the audit event written
in one transaction; the revocation at Jira runs after the commit, with the
tokens held in memory only, so no row lock is held while Jira answers and a
rolled-back ending (ours or the admin's save around it) revokes nothing.

Jira Data Center documents no revocation endpoint (shared/jira-dc-oauth2.md
§3): only an HTTP 200 for every token counts as confirmed. Otherwise the admin
is told the tokens were deleted here and where in Jira the grant can be removed.
Revocation goes only to the Jira that issued the tokens, with the credentials
they were issued for, never to a base URL typed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from .. import egress, explain, jira
from ..fields import UnreadableSecret
from ..jira import Deadline, JiraError, Secret
from ..models import ALMAccount, AuthEvent, PendingAuthorization
from ..validators import normalize_base_url
from .authorization import jira_user
from .common import Kind, ServiceError, Status, client_for, log, mark, own_transaction, record_event
from .grants import jira_get, refresh_deadline

# What "not connected" looks like: every field of a grant, wiped.
WIPED = {
    "access_token": None,
    "refresh_token": None,
    "token_expires_at": None,
    "token_scope": "",
    "connected_as_name": "",
    "connected_as_display_name": "",
    "connected_at": None,
    "last_refreshed_at": None,
    "status": Status.NOT_CONNECTED,
    "last_error": "",
}
APPLICATION_LINKS = "Administration → Applications → Application links"
# Called after the commit with the outcome of the revocation at Jira: (message, confirmed).
Report = Callable[[str, bool], None]


class Outcome(str):
    """A message for the admin that also says whether everything went as asked (a warning otherwise)."""

    confirmed: bool

    def __new__(cls, text: str, *, confirmed: bool):
        outcome = super().__new__(cls, text)
        outcome.confirmed = confirmed
        return outcome


def test_connection(*, account: ALMAccount, actor: str) -> str:
    """Call /myself and /serverInfo; return what an admin wants to read, or raise ServiceError."""
    try:
        if account.refresh_token is None:
            raise ServiceError("This account is not connected to Jira yet: click Get Auth Token.")
        deadline = refresh_deadline()  # both calls together answer before a web server's timeout
        me = jira_get(account=account, path=jira.MYSELF_PATH, actor=actor, deadline=deadline)
        info = jira_get(account=account, path=jira.SERVER_INFO_PATH, actor=actor, deadline=deadline)
    except (ServiceError, JiraError) as exc:
        message = str(exc) if isinstance(exc, ServiceError) else explain.describe("api", exc)
        record_event(account, actor=actor, kind=Kind.TEST_CONNECTION, ok=False, message=message)
        raise ServiceError(message) from None
    name, display = jira_user(me)
    mark(account.pk, connected_as_name=name, connected_as_display_name=display)
    version = explain.plain_text(info.get("version"), 40) or "?"
    url = explain.plain_text(info.get("baseUrl"), 500) or account.base_url
    message = f"Connected to Jira {version} at {url} as {display or 'an unnamed user'}."
    record_event(account, actor=actor, kind=Kind.TEST_CONNECTION, ok=True, message=message)
    return message


# --------------------------------------------------------------------------
# The grant taken off an account, and its revocation after the commit
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Revocation:
    confirmed: bool
    why_not: str = ""  # when not confirmed: what happened, in an admin's words


class HeldGrant:
    """A grant taken off an account row, in memory only: what its revocation at the issuing Jira needs.

    `jira` is an unsaved copy of the account as it was (base URL, Client ID, Client Secret and the Jira it was
    entered for, CA certificate): the revocation goes there even when the row now says otherwise.
    """

    __slots__ = ("account_id", "account_name", "jira", "tokens", "unreadable", "jira_user")

    @sensitive_variables()
    def __init__(self, locked: ALMAccount):
        self.account_id = locked.pk
        self.account_name = locked.name
        self.jira = ALMAccount(
            name=locked.name,
            base_url=locked.base_url,
            client_id=locked.client_id,
            client_secret=locked.client_secret,
            client_secret_base_url=locked.client_secret_base_url,
            jira_ca_certificate=locked.jira_ca_certificate,
        )
        # The refresh token first: it is the long-lived half of the grant.
        self.tokens = tuple(
            (hint, Secret(value))
            for hint, value in (("refresh_token", locked.refresh_token), ("access_token", locked.access_token))
            if isinstance(value, str) and value
        )
        self.unreadable = any(isinstance(v, UnreadableSecret) for v in (locked.refresh_token, locked.access_token))
        self.jira_user = locked.connected_as

    @staticmethod
    def holds_tokens(account: ALMAccount) -> bool:
        return account.refresh_token is not None or account.access_token is not None

    def __repr__(self):
        return f"HeldGrant(ALM account {self.account_id}, <tokens hidden>)"

    @sensitive_variables()
    def revoke(self, *, deadline: Deadline) -> Revocation:
        """Best effort, never raises: the tokens are already deleted here, whatever Jira answers."""
        if self.unreadable:
            return Revocation(False, "the stored tokens cannot be decrypted with the configured "
                                     "FIELD_ENCRYPTION_KEY, so they could not be sent to Jira")
        try:
            client = client_for(self.jira)
        except (ServiceError, egress.EgressError) as exc:
            return Revocation(False, f"Jira was not asked: {explain.plain_text(exc, 300).rstrip('.')}")
        answers, failures = [], []
        for hint, token in self.tokens:
            try:
                answers.append(client.revoke(token=token, token_type_hint=hint, deadline=deadline))
            except JiraError as exc:
                answers.append(False)
                failures.append(explain.plain_text(exc, 300))
            except Exception as exc:  # noqa: BLE001 - best effort after the commit: the admin must get an answer
                answers.append(False)
                failures.append("the request failed unexpectedly")
                log.warning("Revocation at Jira failed for ALM account %s: %s", self.account_id, type(exc).__name__)
        if answers and all(answers):
            return Revocation(True)
        if failures:
            return Revocation(False, failures[0])
        # A 404 (no such endpoint), a 401, or a redirect (an SSO proxy's login page) is not a confirmation.
        return Revocation(False, "Jira did not answer with a confirmation (HTTP 200)")

    def where_in_jira(self) -> str:
        """Where an admin can end the grant in Jira itself."""
        who = f"the Jira user {self.jira_user}" if self.jira_user else "the Jira user who allowed access"
        return (
            "Jira Data Center documents no way for an application to revoke its tokens, so the grant may still "
            f"exist in Jira: {who} can remove it in their Jira profile under Authorized applications, or a Jira "
            f"administrator can delete the incoming application link at {self.jira.base_url} ({APPLICATION_LINKS}),"
            " which ends all of its grants."
        )


def _wipe(account: ALMAccount) -> list[str]:
    """Put "not connected" on `account` (not saved); the names of the fields to save."""
    for name, value in WIPED.items():
        setattr(account, name, value)
    return [*WIPED, "updated_at"]


def _complete_event(event: AuthEvent | None, message: str) -> None:
    """The event was written with the ending (a crash while Jira answers still leaves it); add Jira's answer."""
    if event is not None:
        AuthEvent.objects.filter(pk=event.pk).update(message=message)


# --------------------------------------------------------------------------
# Disconnect
# --------------------------------------------------------------------------


@sensitive_variables()
def disconnect(*, account: ALMAccount, actor: str) -> Outcome:
    """Delete the tokens here (committed first), then revoke them at Jira with the copy held in memory."""
    with own_transaction("Disconnect"):
        locked = ALMAccount.objects.select_for_update().filter(pk=account.pk).first()
        if locked is None:
            raise ServiceError("This ALM account no longer exists.")
        held = HeldGrant(locked) if HeldGrant.holds_tokens(locked) else None
        locked.save(update_fields=_wipe(locked))
        event = record_event(locked, actor=actor, kind=Kind.DISCONNECTED, ok=True, message=(
            "Disconnected: the tokens were deleted here; revoking them at Jira." if held else
            "Disconnected: no tokens were stored."))
    if held is None:
        return Outcome("Disconnected: no tokens were stored.", confirmed=True)
    # Committed: the row holds no token and no lock while Jira answers (with a deadline).
    revocation = held.revoke(deadline=refresh_deadline())
    if revocation.confirmed:
        message = Outcome("Disconnected: the tokens were deleted here and revoked at Jira.", confirmed=True)
    else:
        message = Outcome(
            f"Disconnected: the tokens were deleted here; Jira did not confirm the revocation ({revocation.why_not})."
            f" {held.where_in_jira()}",
            confirmed=False,
        )
    _complete_event(event, message)
    return message


# --------------------------------------------------------------------------
# An admin's edit: a new Jira base URL or Client ID ends the connection
# --------------------------------------------------------------------------


def _what_ends(stored: ALMAccount, edited: ALMAccount) -> list[str]:
    """What in the edit makes the stored grant belong to another Jira or application link (never secrets)."""
    changes = []
    if not same_jira(edited.base_url, stored.base_url):
        changes.append(f"the Jira base URL changed from {stored.base_url} to {edited.base_url}")
    if edited.client_id != stored.client_id:
        changes.append("the Client ID changed")
    return changes


def same_jira(url: str, other: str) -> bool:
    """The same Jira base URL, give or take a trailing slash (the admin stores it without one; a script may not)."""
    return normalize_base_url(url) == normalize_base_url(other)


@sensitive_variables()
def save_account(
    *,
    account: ALMAccount,
    form_fields: list[str],
    new_client_secret: bool,
    actor: str,
    report: Report | None = None,
) -> str | None:
    """Save an admin's edit of `account` (the form's instance); a message when it ended the connection.

    Only the form's fields are written: the row was read without a lock, and a refresh may have rotated the
    tokens meanwhile (writing every column would put back a dead refresh token). Under the row lock the stored
    base URL and Client ID are compared with the edited ones: when either changed, the grant belongs to the old
    Jira's link, so its tokens are wiped in the same transaction (status Not connected, event "Connection
    ended") and revoked after the commit at the old Jira only, with the old credentials. A Client Secret typed
    in the form is bound to the base URL it was entered with (services.client_for sends it nowhere else).

    Runs inside the admin's transaction (the admin's save is atomic): the revocation is scheduled with
    on_commit, so it happens only once the wipe is committed, and `report` gets Jira's answer then.
    """
    if account.pk is None:
        if new_client_secret:
            account.client_secret_base_url = account.base_url
        account.save()
        return None

    concrete = {field.name for field in account._meta.concrete_fields}
    fields = [name for name in form_fields if name in concrete] + ["updated_at"]
    with transaction.atomic():
        stored = ALMAccount.objects.select_for_update().filter(pk=account.pk).first()
        if stored is None:
            raise ServiceError("This ALM account was deleted meanwhile; nothing was saved.")
        if new_client_secret:
            account.client_secret_base_url = account.base_url
            fields.append("client_secret_base_url")
        elif account.base_url != stored.base_url and stored.client_secret is not None:
            bound_to = stored.client_secret_base_url
            if not bound_to:
                # A secret stored without its base URL (made by a script) stays with the Jira it was used for.
                account.client_secret_base_url = stored.base_url
                fields.append("client_secret_base_url")
            elif same_jira(account.base_url, stored.base_url) and same_jira(bound_to, stored.base_url):
                # Only a trailing slash went: the same Jira, so the secret goes along.
                account.client_secret_base_url = account.base_url
                fields.append("client_secret_base_url")

        changes = _what_ends(stored, account)
        held = None
        if changes:
            # An authorization started for the old Jira or link must not complete against the new one.
            PendingAuthorization.objects.filter(account_id=stored.pk).delete()
            if HeldGrant.holds_tokens(stored):
                held = HeldGrant(stored)
                fields += _wipe(account)
        account.save(update_fields=list(dict.fromkeys(fields)))
        if held is None:
            return None

        because = " and ".join(changes)
        message = (f"The connection to Jira was ended because {because}: its tokens were deleted here. "
                   "Click Get Auth Token to connect again.")
        event = record_event(account, actor=actor, kind=Kind.CONNECTION_ENDED, ok=True,
                             message=f"{message} Revoking them at {held.jira.base_url}.")
        transaction.on_commit(lambda: _revoke_after_commit(held, event=event, ended=message, report=report))
    return message


@sensitive_variables()
def _revoke_after_commit(held: HeldGrant, *, event: AuthEvent | None, ended: str, report: Report | None,
                         deadline: Deadline | None = None, prefix: str = "") -> Revocation:
    """Revoke at the Jira that issued the tokens, complete the event with its answer and report it."""
    revocation = held.revoke(deadline=deadline or refresh_deadline())
    jira_at = f"{prefix}The Jira at {held.jira.base_url}"
    if revocation.confirmed:
        text = f"{jira_at} confirmed the revocation of the tokens."
    else:
        text = (f"{jira_at} did not confirm the revocation of the tokens ({revocation.why_not}). "
                f"{held.where_in_jira()}")
    try:
        _complete_event(event, f"{ended} {text}")
    except Exception as exc:  # noqa: BLE001 - the ending is committed and recorded; Jira's answer is extra
        log.warning("ALM account %s: the revocation outcome could not be recorded (%s).", held.account_id,
                    type(exc).__name__)
    if report is not None:
        report(text, revocation.confirmed)
    return revocation


# --------------------------------------------------------------------------
# Deleting an account
# --------------------------------------------------------------------------


@sensitive_variables()
def delete_account(*, account: ALMAccount, actor: str, report: Report | None = None,
                   deadline: Deadline | None = None) -> str:
    """Delete an ALM account, keep its audit trail, and revoke its grant at Jira after the commit.

    Its events keep the account's name (the foreign key becomes empty); an "Account deleted" event names who
    deleted it. Like save_account it may run inside the admin's transaction: the revocation waits for the
    commit and `report` gets Jira's answer then. `deadline` lets a bulk delete share one time budget.
    """
    with transaction.atomic():
        locked = ALMAccount.objects.select_for_update().filter(pk=account.pk).first()
        if locked is None:
            return f"The ALM account {account.name} was already deleted."
        name = locked.name
        held = HeldGrant(locked) if HeldGrant.holds_tokens(locked) else None
        # Events written before account_name existed get the name now, while it is known.
        AuthEvent.objects.filter(account_id=locked.pk, account_name="").update(account_name=name)
        message = f"ALM account {name} ({locked.base_url}) was deleted by {actor}; its audit trail is kept."
        event = record_event(None, account_name=name, actor=actor, kind=Kind.ACCOUNT_DELETED, ok=True,
                             message=message + (" Its tokens were deleted; revoking them at Jira." if held else ""))
        locked.delete()
        if held is not None:
            transaction.on_commit(lambda: _revoke_after_commit(held, event=event, ended=message, report=report,
                                                               deadline=deadline, prefix=f"{name}: "))
    return message
