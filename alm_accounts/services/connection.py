"""Test connection, Disconnect, and what ends a connection: one implementation for both kinds of grant.

A grant is an ALM account's own connection or a person's own credential (models.Grant). Test and Disconnect
take either (test_grant, disconnect_grant; test_connection and disconnect are the account's wrappers). What
ends grants: Disconnect (or an admin's Revoke of a person's credential); an edit of the Jira base URL or
Client ID (the tokens belong to the old Jira's link: the account's and every person's on it); deleting the
account (all of them); a person made inactive or deleted (theirs, see signals.py).

Every ending follows one rule (decisions under the lock, side effects after
commit): the tokens are taken off the locked row and the audit event written
in one transaction; the revocation at Jira runs after the commit, with the
tokens held in memory only, so no row lock is held while Jira answers and a
rolled-back ending (ours or the admin's save around it) revokes nothing.

Jira Data Center documents no revocation endpoint (the provider plugin's
revoke resource is undocumented): only an HTTP 200 for every token counts as confirmed. Otherwise the admin
(or the person) is told the tokens were deleted here and where in Jira the
grant can be removed. Revocation goes only to the Jira that issued the tokens,
with the credentials they were issued for, never to a base URL typed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.views.decorators.debug import sensitive_variables

from .. import egress, explain
from ..fields import UnreadableSecret
from ..jira import Deadline, JiraError, Secret
from ..kinds import KINDS, NOT_THEIR_OWN_JIRA_USER, kind_of
from ..models import ALMAccount, ALMCredential, AuthEvent, Grant, PendingAuthorization
from ..providers import provider_for
from ..validators import normalize_base_url
from .authorization import ACCOUNTS_OWN, identity_holder, jira_user, person_with_the_accounts_identity
from .common import Kind, ServiceError, Status, client_for, log, mark, own_transaction, record_event
from .grants import GrantRef, refresh_deadline, valid_access_token
from .jira_calls import grant_request
from .service_accounts import ServiceAccountCheck
from .service_accounts import store_check as store_service_check
from .service_accounts import where as service_accounts_where

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
    "refresh_count": 0,
    "status": Status.NOT_CONNECTED,
    "last_error": "",
    # An ended grant has nothing left to alert about (services.alerts).
    "failing_since": None,
    "alert_open": False,
    "reconsent_warned_at": None,
}
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
    """Test the ALM account's own connection (see test_grant)."""
    return test_grant(grant=account, actor=actor)


def test_grant(*, grant: Grant, actor: str) -> str:
    """Call /myself and /serverInfo with `grant` (an account's connection or a person's credential).

    Always this grant, whatever the account's policy for people (jira_calls.grant_request). Returns what the
    one who clicked Test wants to read, or raises ServiceError; both are audited.
    """
    try:
        if not kind_of(grant).can_give_token(grant):
            raise ServiceError(kind_of(grant).not_connected(grant, actor))
        # A grant that yields no token (Jira stopped accepting it, unreadable secrets) says why in its own words.
        valid_access_token(account=grant, actor=actor)
        deadline = refresh_deadline()  # both calls together answer before a web server's timeout
        client = client_for(grant.grant_account)
        me = grant_request(grant=grant, method="GET", path=client.myself_path, actor=actor, deadline=deadline)
        info = grant_request(grant=grant, method="GET", path=client.server_info_path, actor=actor, deadline=deadline)
        if not (isinstance(me, dict) and isinstance(info, dict)):
            raise ServiceError("Jira's answer is not the JSON object its REST API returns: check the Jira base URL "
                               "(a proxy or login page may answer in Jira's place).")
    except ServiceError as exc:
        message = kind_of(grant).test_failed(grant, exc)
        record_event(grant, actor=actor, kind=Kind.TEST_CONNECTION, ok=False, message=message)
        raise ServiceError(message) from None
    account = grant.grant_account
    name, display = jira_user(me, account)
    refused, warning = _note_jira_user(grant, name, display)
    if refused:
        record_event(grant, actor=actor, kind=Kind.TEST_CONNECTION, ok=False, message=refused)
        raise ServiceError(refused)
    display = display or "an unnamed user"
    message = kind_of(grant).test_passed(grant, info=info, display=display, warning=warning)
    record_event(grant, actor=actor, kind=Kind.TEST_CONNECTION, ok=True, message=message)
    return message


def _note_jira_user(grant: Grant, name: str, display: str) -> tuple[str, str]:
    """Keep the Jira user a grant acts as up to date (Jira users can be renamed), decided as at connect.

    Under the account's row lock, then the credential's (the order of the connect and of save_account), so that
    a connect or another Test on the account is decided before or after this one, never beside it. A person's
    grant that now acts as the account's own Jira user, or as the one another person's credential holds, is
    refused as it would be at connect: the name is not recorded, and the credential needs re-authorization, in
    words starting with NOT_THEIR_OWN_JIRA_USER, until the person reconnects as themselves. The account's own
    connection that now acts as a person's Jira user is recorded, with the warning its connect gives (that
    person's credential is then refused, jira_calls). Returns (refusal, warning), each "" when there is none.
    """
    who = display or name or "an unnamed user"
    with own_transaction("Test connection"):
        account = GrantRef.of(grant.grant_account).locked()
        if account is None:
            return "", ""  # deleted meanwhile: nothing left to record
        if not kind_of(grant).must_be_own_jira_user:
            mark(account, connected_as_name=name, connected_as_display_name=display)
            account.connected_as_name, account.connected_as_display_name = name, display
            return "", person_with_the_accounts_identity(account) if name else ""
        credential = GrantRef.of(grant).locked()
        if credential is None:
            return "", ""
        holder = identity_holder(account, credential, name=name) if name else ""
        if not holder:
            try:
                with transaction.atomic():
                    mark(credential, connected_as_name=name, connected_as_display_name=display)
                return "", ""
            except IntegrityError:
                # A write that did not take the account's lock (a script): the unique constraint kept the rule.
                holder = "another person"
        if holder == ACCOUNTS_OWN:
            refusal = (f"{NOT_THEIR_OWN_JIRA_USER}{who}. That is the Jira user {account.name}'s own connection acts "
                       "as, so this connection is not used: through it the person would act as the account's "
                       "administrator.")
        else:
            refusal = (f"{NOT_THEIR_OWN_JIRA_USER}{who}. That Jira user is already connected to {account.name} by "
                       f"{holder}, so this connection is not used.")
        refusal += (" Reconnect under My ALM Credentials signed in to Jira as yourself (the existing tokens stay "
                    "until then; Disconnect deletes them).")
        mark(credential, status=Status.NEEDS_REAUTHORIZATION, last_error=refusal)
        log.warning("%s: Test found the Jira user %s holds on the account; refused.", GrantRef.of(grant),
                    "the account's own connection" if holder == ACCOUNTS_OWN else "another person")
    return refusal, ""


# --------------------------------------------------------------------------
# A grant taken off its row, and its revocation after the commit
# --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Revocation:
    confirmed: bool
    why_not: str = ""  # when not confirmed: what happened, in an admin's words


class HeldGrant:
    """A grant taken off its row (an account's connection or a person's credential), in memory only: what its
    revocation at the issuing Jira needs.

    `jira` is an unsaved copy of the account as it was (base URL, Client ID, Client Secret and the Jira it was
    entered for, CA certificate): the revocation goes there even when the row now says otherwise. `issued_by`
    is that account as it was before an edit (save_account); by default the grant's account.
    """

    __slots__ = ("account_id", "account_name", "owner", "jira", "tokens", "unreadable", "jira_user", "service")

    @sensitive_variables()
    def __init__(self, locked: Grant, *, issued_by: ALMAccount | None = None):
        account = issued_by or locked.grant_account
        self.account_id = account.pk
        self.account_name = account.name
        self.owner = locked.grant_owner  # blank: the account's own connection
        self.jira = ALMAccount(
            name=account.name,
            authentication=account.authentication,
            cloud_id=account.cloud_id,
            base_url=account.base_url,
            client_id=account.client_id,
            client_secret=account.client_secret,
            client_secret_base_url=account.client_secret_base_url,
            jira_ca_certificate=account.jira_ca_certificate,
        )
        # The refresh token first: it is the long-lived half of the grant.
        self.tokens = tuple(
            (hint, Secret(value))
            for hint, value in (("refresh_token", locked.refresh_token), ("access_token", locked.access_token))
            if isinstance(value, str) and value
        )
        self.unreadable = any(isinstance(v, UnreadableSecret) for v in (locked.refresh_token, locked.access_token))
        self.jira_user = locked.connected_as
        # A service account's token (client credentials): nothing at Jira to revoke with the link's credentials.
        self.service = kind_of(locked).by_client_credentials(locked)

    @staticmethod
    def holds_tokens(grant: Grant) -> bool:
        return grant.refresh_token is not None or grant.access_token is not None

    def __repr__(self):
        whose = f", credential of {self.owner}" if self.owner else ""
        return f"HeldGrant(ALM account {self.account_id}{whose}, <tokens hidden>)"

    @sensitive_variables()
    def revoke(self, *, deadline: Deadline) -> Revocation:
        """Best effort, never raises: the tokens are already deleted here, whatever Jira answers."""
        if self.service:
            return Revocation(False, "a service account's access token is not revoked: it ends by itself within "
                                     "the hour")
        if not provider_for(self.jira).can_revoke:
            return Revocation(False, f"{provider_for(self.jira).label} has no revocation endpoint")
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
                log.warning("Revocation at Jira failed for %r: %s", self, type(exc).__name__)
        if answers and all(answers):
            return Revocation(True)
        if failures:
            return Revocation(False, failures[0])
        # A 404 (no such endpoint), a 401, or a redirect (an SSO proxy's login page) is not a confirmation.
        return Revocation(False, "Jira did not answer with a confirmation (HTTP 200)")

    def where_in_jira(self, *, to_owner: bool = False) -> str:
        """Where the grant can be ended in Jira itself; `to_owner`: addressed to the person whose grant it is."""
        if self.service:
            return (f"To stop the service account itself, disable it or delete its credential in "
                    f"{service_accounts_where(self.jira)}.")
        return provider_for(self.jira).where_to_remove(account=self.jira, jira_user=self.jira_user, owner=self.owner,
                                                  to_owner=to_owner)


# What a Disconnect (or an admin's Revoke) keeps of a person's credential Jira stopped accepting: the refusal
# itself, why, and whom Jira refused. Without it the person would be "not connected" and, under the default policy,
# act in Jira as the account's own connection: the one Jira refused could lift the refusal by clicking Disconnect.
# Only a successful reconnect (authorization.store_new_grant) ends it.
KEPT_REFUSAL = ("status", "last_error", "connected_as_display_name")


def _wipe(grant: Grant) -> list[str]:
    """Put "not connected" on `grant` (not saved); the names of the fields to save."""
    for name, value in WIPED.items():
        setattr(grant, name, value)
    return [*WIPED, "updated_at"]


def _wipe_keeping_refusal(grant: Grant) -> list[str]:
    """As _wipe, except that a person's credential Jira stopped accepting stays refused (KEPT_REFUSAL)."""
    if not kind_of(grant).refusal_outlives_disconnect(grant):
        return _wipe(grant)
    kept = {name: getattr(grant, name) for name in KEPT_REFUSAL}
    fields = _wipe(grant)
    for name, value in kept.items():
        setattr(grant, name, value)
    return fields


def _complete_event(event: AuthEvent | None, message: str) -> None:
    """The event was written with the ending (a crash while Jira answers still leaves it); add Jira's answer."""
    if event is not None:
        AuthEvent.objects.filter(pk=event.pk).update(message=message)


# --------------------------------------------------------------------------
# Disconnect (the account's own connection, or a person's credential)
# --------------------------------------------------------------------------


def disconnect(*, account: ALMAccount, actor: str) -> Outcome:
    """Disconnect the ALM account's own connection (see disconnect_grant)."""
    return disconnect_grant(grant=account, actor=actor)


@sensitive_variables()
def disconnect_grant(*, grant: Grant, actor: str) -> Outcome:
    """Delete a grant's tokens here (committed first), then revoke them at Jira with the copy held in memory.

    The same for an ALM account's own connection and a person's credential (a person disconnecting themselves,
    or an admin's Revoke): the person's tokens, the account's Jira client, and an event naming the person.
    """
    ref = GrantRef.of(grant)
    with own_transaction("Disconnect"):
        locked = ref.locked()
        if locked is None:
            raise ServiceError(KINDS[ref.kind].gone)
        lead, tokens, to_owner = kind_of(locked).disconnected(locked, actor)
        held = HeldGrant(locked) if HeldGrant.holds_tokens(locked) else None
        refused = kind_of(locked).still_refused(locked, actor)
        forgotten = kind_of(locked).forgotten_on_disconnect(locked)
        for name, value in forgotten.items():
            setattr(locked, name, value)
        locked.save(update_fields=_wipe_keeping_refusal(locked) + list(forgotten))
        if forgotten:
            tokens += " and the service account's Client Secret"
        none_stored = f"{lead}: no tokens were stored.{refused}"
        event = record_event(locked, actor=actor, kind=Kind.DISCONNECTED, ok=True, message=(
            f"{lead}: {tokens} were deleted here; revoking them at Jira.{refused}" if held else none_stored))
    if held is None:
        return Outcome(none_stored, confirmed=True)
    # Committed: the row holds no token and no lock while Jira answers (with a deadline).
    revocation = held.revoke(deadline=refresh_deadline())
    if revocation.confirmed:
        message = Outcome(f"{lead}: {tokens} were deleted here and revoked at Jira.{refused}", confirmed=True)
    else:
        message = Outcome(
            f"{lead}: {tokens} were deleted here; Jira did not confirm the revocation ({revocation.why_not})."
            f" {held.where_in_jira(to_owner=to_owner)}{refused}",
            confirmed=False,
        )
    _complete_event(event, message)
    return message


# --------------------------------------------------------------------------
# People's credentials ended together (an edit or deletion of their account, a person made inactive or deleted)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EndedCredential:
    held: HeldGrant
    event: AuthEvent | None
    ended: str  # the event's message without Jira's answer


HOLDS_TOKENS = Q(refresh_token__isnull=False) | Q(access_token__isnull=False)


@sensitive_variables()
def _end_credentials(credentials, *, actor: str, because: str, issued_by: ALMAccount | None = None,
                     wipe: bool = True, keep_refusal: bool = False) -> list[EndedCredential]:
    """Take the tokens off locked credentials (wiped unless the rows are about to be deleted) and write one
    "Connection ended" event each, naming whose. Inside the caller's transaction; revoke after its commit.

    `keep_refusal`: a credential Jira stopped accepting stays refused (as after Disconnect): for a person made
    inactive, who would otherwise act as the account's connection once an admin makes them active again. Not
    for a new Jira base URL or Client ID, which ends every connection to the old Jira, refusals included."""
    ended = []
    for credential in credentials:
        held = HeldGrant(credential, issued_by=issued_by)
        refused = keep_refusal and credential.status == Status.NEEDS_REAUTHORIZATION
        if wipe:
            credential.save(update_fields=_wipe_keeping_refusal(credential) if keep_refusal else _wipe(credential))
        message = (f"The Jira connection of {held.owner} was ended because {because}: their tokens were deleted "
                   "here." + (" It needed re-authorization, and stays so until they reconnect." if refused else ""))
        event = record_event(credential, actor=actor, kind=Kind.CONNECTION_ENDED, ok=True,
                             message=f"{message} Revoking them at {held.jira.base_url}.")
        ended.append(EndedCredential(held, event, message))
    return ended


@sensitive_variables()
def _revoke_credentials_after_commit(ended: list[EndedCredential], *, report: Report | None,
                                     deadline: Deadline | None = None, prefix: str = "") -> None:
    """Revoke each ended credential at its Jira (one time budget for all) and report them together."""
    deadline = deadline or refresh_deadline()
    confirmed, unconfirmed = [], []
    for item in ended:
        revocation = _revoke_after_commit(item.held, event=item.event, ended=item.ended, report=None,
                                          deadline=deadline)
        (confirmed if revocation.confirmed else unconfirmed).append((item.held, revocation))
    if report is None:
        return
    if confirmed:
        at = ", ".join(dict.fromkeys(held.jira.base_url for held, _ in confirmed))
        people = ", ".join(held.owner for held, _ in confirmed)
        report(f"{prefix}The Jira at {at} confirmed the revocation of the tokens of {people}.", True)
    if unconfirmed:
        people = ", ".join(f"{held.owner} ({revocation.why_not})" for held, revocation in unconfirmed)
        report(f"{prefix}Jira did not confirm the revocation of the tokens of {people}. Jira Data Center documents "
               "no way for an application to revoke its tokens, so these grants may still exist in Jira: each "
               "Jira user can remove theirs in their Jira profile under Authorized applications.", False)


def _names(ended: list[EndedCredential], limit: int = 10) -> str:
    owners = [item.held.owner for item in ended]
    more = f" and {len(owners) - limit} more" if len(owners) > limit else ""
    return ", ".join(owners[:limit]) + more


def _people(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


@sensitive_variables()
def end_credentials_of_person(*, user, actor: str, because: str, wipe: bool = True) -> int:
    """End every Jira credential of a person (made inactive, or being deleted): wiped and audited in the
    current transaction, revoked at Jira best-effort after its commit. Returns how many held tokens."""
    with transaction.atomic():
        credentials = list(ALMCredential.objects.select_for_update(of=("self",)).select_related("account")
                           .filter(HOLDS_TOKENS, user=user).order_by("pk"))
        for credential in credentials:
            credential.user = user  # the person at hand, not read again
        # Made active again, a person Jira had refused must not act as the account's connection instead.
        ended = _end_credentials(credentials, actor=actor, because=because, wipe=wipe, keep_refusal=True)
        if ended:
            transaction.on_commit(lambda: _revoke_credentials_after_commit(ended, report=None))
    return len(ended)


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
    if edited.service_client_id != stored.service_client_id:
        changes.append("the service account's Client ID changed")
    if edited.authentication != stored.authentication:
        changes.append(f"the authentication changed from {stored.get_authentication_display()} to "
                       f"{edited.get_authentication_display()}")
    return changes


def same_jira(url: str, other: str) -> bool:
    """The same Jira base URL, give or take a trailing slash (the admin stores it without one; a script may not)."""
    return normalize_base_url(url) == normalize_base_url(other)


def _locked_credentials(account_id: int):
    """The people's credentials of an account that hold tokens, under their row locks."""
    return list(ALMCredential.objects.select_for_update(of=("self",)).select_related("user")
                .filter(HOLDS_TOKENS, account_id=account_id).order_by("pk"))


@sensitive_variables()
def save_account(
    *,
    account: ALMAccount,
    form_fields: list[str],
    new_client_secret: bool,
    actor: str,
    report: Report | None = None,
    new_service_secret: bool = False,
    service_check: ServiceAccountCheck | None = None,
) -> str | None:
    """Save an admin's edit of `account` (the form's instance); a message when it ended connections.

    Only the form's fields are written: the row was read without a lock, and a refresh may have rotated the
    tokens meanwhile (writing every column would put back a dead refresh token). Under the row lock the stored
    base URL and Client ID are compared with the edited ones: when either changed, every grant on the old
    Jira's link (the account's own connection and each person's credential) is ended: its tokens wiped in the
    same transaction (status Not connected, one "Connection ended" event per grant) and revoked after the
    commit at the old Jira only, with the old credentials. A Client Secret typed in the form is bound to the
    base URL it was entered with (services.client_for sends it nowhere else).

    Runs inside the admin's transaction (the admin's save is atomic): the revocations are scheduled with
    on_commit, so they happen only once the wipe is committed, and `report` gets Jira's answers then.

    A service account (providers.service_accounts): `service_check` is what the form's check found with its
    credentials (services.service_accounts.check), stored in this transaction after any ending; its Client Secret
    is bound to the base URL it was typed with, and forgotten when the authentication changes without it.
    """
    if new_service_secret:
        account.service_client_secret_base_url = account.base_url
    if account.pk is None:
        if new_client_secret:
            account.client_secret_base_url = account.base_url
        with transaction.atomic():
            account.save()
            if service_check is not None:
                store_service_check(account, service_check, actor=actor)
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

        if new_service_secret:
            fields.append("service_client_secret_base_url")
        elif account.authentication != stored.authentication and stored.service_client_secret is not None:
            # The service account's secret is bound to its provider (and Data Center host) like the Client Secret.
            account.service_client_secret, account.service_client_secret_base_url = None, ""
            fields += ["service_client_secret", "service_client_secret_base_url"]
        if account.is_cloud != stored.is_cloud and not new_client_secret:
            # A secret entered for one kind of application (a Data Center link, an Atlassian app) never goes to the
            # other's host, even if a later edit gives the account a Client ID again.
            account.client_secret, account.client_secret_base_url = None, ""
            fields += ["client_secret", "client_secret_base_url"]

        if new_client_secret or (account.client_id, account.authentication) != (stored.client_id,
                                                                                stored.authentication):
            # New client credentials: a removed link is asked about again at the next pass (services.client_refused).
            account.client_refused_at = account.client_checked_at = None
            fields += ["client_refused_at", "client_checked_at"]

        changes = _what_ends(stored, account)
        held, people = None, []
        if changes:
            # An authorization started for the old Jira or link must not complete against the new one.
            PendingAuthorization.objects.filter(account_id=stored.pk).delete()
            # The Cloud site found at consent belongs to the old site URL.
            account.cloud_id, account.cloud_site_name = "", ""
            fields += ["cloud_id", "cloud_site_name"]
            if HeldGrant.holds_tokens(stored):
                held = HeldGrant(stored)
                fields += _wipe(account)
        account.save(update_fields=list(dict.fromkeys(fields)))
        if service_check is not None:
            store_service_check(account, service_check, actor=actor)
        because = " and ".join(changes)
        if changes:
            credentials = _locked_credentials(stored.pk)
            for credential in credentials:
                credential.account = account  # the events name the account as saved
            people = _end_credentials(credentials, actor=actor, because=because, issued_by=stored)
        if held is None and not people:
            return None

        event = None
        if held is not None:
            message = (f"The connection to Jira was ended because {because}: its tokens were deleted here."
                       + ("" if service_check is not None else " Click Get Auth Token to connect again."))
            event = record_event(account, actor=actor, kind=Kind.CONNECTION_ENDED, ok=True,
                                 message=f"{message} Revoking them at {held.jira.base_url}.")
            own_ended = message
            if people:
                message += (f" The Jira connections of {_people(len(people))} ({_names(people)}) were ended too: they "
                            "connect again under My ALM Credentials.")
        else:
            message = (f"The Jira connections of {_people(len(people))} ({_names(people)}) were ended because "
                       f"{because}: their tokens were deleted here; they connect again under My ALM Credentials.")

        def revoke_all():
            deadline = refresh_deadline()  # one time budget for every revocation: the request must end
            if held is not None:
                _revoke_after_commit(held, event=event, ended=own_ended, report=report, deadline=deadline)
            if people:
                _revoke_credentials_after_commit(people, report=report, deadline=deadline)

        transaction.on_commit(revoke_all)
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
        log.warning("%r: the revocation outcome could not be recorded (%s).", held, type(exc).__name__)
    if report is not None:
        report(text, revocation.confirmed)
    return revocation


# --------------------------------------------------------------------------
# Deleting an account
# --------------------------------------------------------------------------


@sensitive_variables()
def delete_account(*, account: ALMAccount, actor: str, report: Report | None = None,
                   deadline: Deadline | None = None) -> str:
    """Delete an ALM account, keep its audit trail, and revoke every grant on it at Jira after the commit.

    Its events keep the account's name and whose grant each concerns (the foreign keys become empty); an
    "Account deleted" event names who deleted it, and a "Connection ended" event each person whose credential
    went with it. Like save_account it may run inside the admin's transaction: the revocations wait for the
    commit and `report` gets Jira's answers then. `deadline` lets a bulk delete share one time budget.
    """
    with transaction.atomic():
        locked = ALMAccount.objects.select_for_update().filter(pk=account.pk).first()
        if locked is None:
            return f"The ALM account {account.name} was already deleted."
        name = locked.name
        held = HeldGrant(locked) if HeldGrant.holds_tokens(locked) else None
        credentials = _locked_credentials(locked.pk)
        for credential in credentials:
            credential.account = locked
        # Events written before account_name existed get the name now, while it is known.
        AuthEvent.objects.filter(account_id=locked.pk, account_name="").update(account_name=name)
        message = f"ALM account {name} ({locked.base_url}) was deleted by {actor}; its audit trail is kept."
        # The credentials go with the account (their rows are deleted): nothing to wipe, their events stay.
        people = _end_credentials(credentials, actor=actor, because=f"the ALM account {name} was deleted",
                                  wipe=False)
        if people:
            message += f" The Jira connections of {_people(len(people))} ({_names(people)}) ended with it."
        event = record_event(None, account_name=name, actor=actor, kind=Kind.ACCOUNT_DELETED, ok=True,
                             message=message + (" Its tokens were deleted; revoking them at Jira." if held else ""))
        locked.delete()

        def revoke_all():
            budget = deadline or refresh_deadline()
            if held is not None:
                _revoke_after_commit(held, event=event, ended=message, report=report, deadline=budget,
                                     prefix=f"{name}: ")
            if people:
                _revoke_credentials_after_commit(people, report=report, deadline=budget, prefix=f"{name}: ")

        if held is not None or people:
            transaction.on_commit(revoke_all)
    return message
