"""What differs between the kinds of grant: one class each, found through one registry.

Every grant (models.Grant) follows one lifecycle (services.grants, services.authorization, services.connection):
connect, refresh under the row lock, use, test, disconnect. What differs between the ALM account's own connection
and a person's own credential (next: a service account) is here, in one class per kind: whose grant it is, how its
row is locked and its account reached, which grants the refresher keeps alive, whether its owner may use it now,
what its owner reads, and who is told when it breaks. Callers ask `kind_of(grant)` (or `KINDS[ref.kind]` for a
GrantRef) and never test `grant_kind`: a new kind of connection is one new class here, registered in KINDS.

Words that depend only on who mends a grant (the reconnect hint, the page and button, a refresh failure) are in
alm_accounts.messages, chosen by the kind's `fixed_by`; the sentences particular to one kind (Test, Disconnect,
"not connected") are its methods here.
"""

from __future__ import annotations

import copy
from datetime import timedelta

from django.db.models import F, Model, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from . import explain
from .conf import app_settings
from .models import ALMAccount, ALMCredential, Grant, GrantStatus, is_due
from .providers import SERVICE_ACCOUNT_AUTHENTICATIONS, provider_for

# How a person's credential that Test found acting as a Jira user not theirs (the account's own, or another
# person's) starts its last_error: refused as needing re-authorization, in these words rather than "Jira no longer
# accepts it" (services.connection, services.jira_calls, my_credentials).
NOT_THEIR_OWN_JIRA_USER = "Jira says this connection now acts as "

# The rows a grant's refresh reads along, by related name ("account" -> its ALMAccount), read beforehand for many
# grants at once (refresher.selection.ReadAlongBatches) and handed in (GrantKind.read_along_from).
ReadAlong = dict[str, Model]

# Who mends a grant Jira stopped accepting (messages.RECONNECT has the words for each).
ADMINISTRATOR = "administrator"
PERSON = "person"
# An administrator, on an account whose own connection is a service account's: no Get Auth Token to click, the
# service account's credentials to paste again.
SERVICE_ADMINISTRATOR = "service account administrator"


# A service account's check that failed (Jira unreachable, the service account refused) is tried again this often by
# the refresher until one works; callers that need a token ask at once.
SERVICE_ACCOUNT_RETRY = timedelta(hours=1)


def service_check_interval() -> timedelta:
    """How often the refresher verifies a service account's connection by asking for a token (no refresh token to
    keep alive: this is how a deleted or disabled service account is noticed, SERVICE_ACCOUNT_CHECK_HOURS)."""
    return timedelta(hours=app_settings.SERVICE_ACCOUNT_CHECK_HOURS)


class GrantKind:
    """The behaviour of one kind of grant; the subclasses fill in what differs."""

    key: str  # the kind's name in GrantRef, in logs and metrics (the model's grant_kind)
    model: type[Grant]
    label: str  # how a grant of this kind is named in logs: "ALM account 3"
    # The path from the grant to its ALM account in queries ("" for the account's own connection).
    account_path: str = ""
    # The rows read along with the grant when it is locked (not locked themselves).
    read_along: tuple[str, ...] = ()
    # Their columns that decide a refresh and change while the refresher runs: read with the locked grant even when
    # the rows themselves were read beforehand for a batch of grants (locking_along).
    fresh_along: dict[str, tuple[str, ...]] = {}
    # Whose action mends it once Jira stopped accepting it (messages.RECONNECT), and to whom the provider's words
    # about a refused client are addressed (a person can only ask).
    fixed_by: str = ADMINISTRATOR
    # A person's own credential: Jira acts as that person (services.jira_calls.JiraIdentity).
    is_persons_own = False
    # Its own Jira user must be its owner's, not the account's or another person's (checked at connect and by
    # Test, services.connection).
    must_be_own_jira_user = False
    # When its account's client is refused (a removed link), it raises its own "broken" alert (services.alerts);
    # else its recipients were told once about the link.
    alerts_when_client_refused = True
    gone = "This grant no longer exists."  # what a Disconnect of a deleted one says

    # --- whose grant it is, and its rows ---

    def credential(self, grant: Grant) -> ALMCredential | None:
        """The credential an audit event or an alert about the grant points to (None: the account's own)."""
        return None

    def locking(self, queryset: QuerySet) -> QuerySet:
        """The query that locks one grant of this kind, with what its refresh reads along."""
        return queryset.select_related(*self.read_along) if self.read_along else queryset

    def locking_along(self, queryset: QuerySet) -> QuerySet:
        """The query that locks one grant of this kind when the rows it reads along are handed in (see
        read_along_from): its own row, and only the columns of theirs that must be read with it (fresh_along)."""
        return queryset.annotate(**{fresh_column(name, column): F(f"{name}__{column}")
                                    for name, columns in self.fresh_along.items() for column in columns})

    def read_along_from(self, grant: Grant, rows: ReadAlong) -> None:
        """Give the grant locked by locking_along the rows its refresh reads along, read beforehand by the caller
        (`rows`: the related name -> the row, e.g. "account" -> its ALMAccount; shared by the grants of a batch,
        so each grant gets its own copy), with the fresh_along columns as read under the lock. A row that is not
        the grant's is left out (then read when first needed)."""
        for name in self.read_along:
            row = rows.get(name)
            if row is None or getattr(grant, self.model._meta.get_field(name).attname) != row.pk:
                continue
            row = copy.copy(row)
            for column in self.fresh_along.get(name, ()):
                setattr(row, column, getattr(grant, fresh_column(name, column)))
            setattr(grant, name, row)

    # --- the refresher's rule ---

    def usable(self) -> Q:
        """The grants of this kind anyone may use at all (an inactive person's never)."""
        return Q()

    def kept_alive(self) -> Q:
        """The one "refreshable" rule: the grants the refresher keeps alive (selectors), counts in the status at a
        glance (status) and in the metrics (health). The refresher also leaves out, for a while, the grants of an
        account whose client Jira refuses (selectors.refreshable_grants)."""
        return Q(refresh_token__isnull=False) & ~Q(status=GrantStatus.NEEDS_REAUTHORIZATION) & self.usable()

    def due(self, within: timedelta) -> Q:
        """The refresher's "due" rule as a query: the access token expires within `within` (or its expiry is
        unknown)."""
        return Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=timezone.now() + within)

    def is_due(self, grant: Grant, *, within: timedelta) -> bool:
        """The same rule for one grant read under its lock (services.grants)."""
        return is_due(grant.token_expires_at, within=within)

    def without_the_link(self) -> Q | None:
        """Its grants whose token is not obtained through the account's link / app (a service account's own): a
        link Jira refuses (client_refused) does not stop them. None: every grant of this kind goes through it."""
        return None

    def on_their_own_cadence(self) -> Q | None:
        """Its grants that `due` alone decides, used or idle (a service account's, checked every
        SERVICE_ACCOUNT_CHECK_HOURS); the others are also kept fresh only while in use, else kept alive
        (selectors.due_grants). None: none."""
        return None

    def can_give_token(self, grant: Grant) -> bool:
        """It holds what a new token is obtained with (a refresh token; a service account's credentials)."""
        return grant.refresh_token is not None

    def by_client_credentials(self, grant: Grant) -> bool:
        """Its token is a service account's, asked for with client credentials (services.service_accounts), not
        refreshed with a refresh token."""
        return False

    def mended_by(self, grant: Grant) -> str:
        """Whose action mends it (messages.RECONNECT has the words for each)."""
        return self.fixed_by

    def forgotten_on_disconnect(self, grant: Grant) -> dict:
        """Fields besides the tokens that a Disconnect wipes (a service account's secret: Disconnect forgets it)."""
        return {}

    def is_inactive(self, grant: Grant) -> bool:
        """Never refreshed or used (an inactive person's credential)."""
        return False

    def holds_accounts_identity(self, grant: Grant) -> bool:
        """It acts as the Jira user the account's own connection acts as, which it must not (see
        must_be_own_jira_user)."""
        return False

    def refusal_outlives_disconnect(self, grant: Grant) -> bool:
        """A Disconnect keeps Jira's refusal of this grant (services.connection.KEPT_REFUSAL)."""
        return False

    # --- the words its owner reads ---

    def name(self, grant: Grant) -> str:
        """How a grant is named in a command's output and in messages."""
        return grant.grant_account.name

    def acting(self, grant: Grant) -> str:
        """Who Jira sees acting with this grant, in the words every error uses."""
        raise NotImplementedError

    def test_passed(self, grant: Grant, *, info: dict, display: str, warning: str) -> str:
        raise NotImplementedError

    def test_failed(self, grant: Grant, exc: Exception) -> str:
        """A failed Test in the words of whoever clicked it."""
        return str(exc)

    def not_connected(self, grant: Grant, actor: str) -> str:
        raise NotImplementedError

    def disconnected(self, grant: Grant, actor: str) -> tuple[str, str, bool]:
        """How a disconnect is told to whoever clicked: (lead, whose tokens, addressed to the person)."""
        raise NotImplementedError

    def still_refused(self, grant: Grant, actor: str) -> str:
        """What a Disconnect of a grant whose refusal outlives it leaves, in the words of who clicked."""
        return ""

    def problem_for_owner(self, grant: Grant, hint: str) -> str:
        """Added to a grant's failure when its owner must act and the failure's own words name another's button."""
        return ""

    # --- alerts ---

    def recipients(self, grant: Grant, *, for_account: list[str], client_refused: bool) -> list[str]:
        """Who is told when it breaks or recovers; `for_account`: the account's Notify addresses, else ADMINS."""
        return for_account

    def link(self, grant: Grant) -> str:
        """The page an alert about it links to (a path)."""
        raise NotImplementedError


class AccountsOwn(GrantKind):
    """The ALM account's own connection: Get Auth Token by an administrator."""

    key = ALMAccount.grant_kind
    model = ALMAccount
    label = "ALM account"
    alerts_when_client_refused = False
    gone = "This ALM account no longer exists."

    # A service account's connection (providers.service_accounts) is kept alive differently: there is no refresh
    # token, so the refresher only verifies it, once every SERVICE_ACCOUNT_CHECK_HOURS, by asking for a token.
    SERVICE = Q(authentication__in=SERVICE_ACCOUNT_AUTHENTICATIONS)

    def kept_alive(self) -> Q:
        consent = Q(refresh_token__isnull=False) & ~self.SERVICE
        service = self.SERVICE & Q(service_client_secret__isnull=False) & ~Q(service_client_id="")
        return (consent | service) & ~Q(status=GrantStatus.NEEDS_REAUTHORIZATION) & self.usable()

    def due(self, within: timedelta) -> Q:
        # A service account's cached token is not renewed ahead of time (the next caller asks for one): it is due
        # only for its check, and a check that failed is tried again once SERVICE_ACCOUNT_RETRY has passed (a
        # failure updates the row), not at every pass.
        now = timezone.now()
        checked_before = now - service_check_interval()
        service_due = (Q(last_refreshed_at__isnull=True) | Q(last_refreshed_at__lte=checked_before)) & (
            Q(failing_since__isnull=True) | Q(updated_at__lte=now - SERVICE_ACCOUNT_RETRY))
        return (~self.SERVICE & super().due(within)) | (self.SERVICE & service_due)

    def without_the_link(self) -> Q | None:
        return self.SERVICE

    def on_their_own_cadence(self) -> Q | None:
        return self.SERVICE

    def is_due(self, grant: Grant, *, within: timedelta) -> bool:
        if not self.by_client_credentials(grant):
            return super().is_due(grant, within=within)
        checked = grant.last_refreshed_at
        return super().is_due(grant, within=within) or checked is None or \
            checked <= timezone.now() - service_check_interval()

    def can_give_token(self, grant: Grant) -> bool:
        return provider_for(grant).own_connection_possible(grant)

    def by_client_credentials(self, grant: Grant) -> bool:
        return provider_for(grant).client_credentials

    def mended_by(self, grant: Grant) -> str:
        return SERVICE_ADMINISTRATOR if self.by_client_credentials(grant) else self.fixed_by

    def forgotten_on_disconnect(self, grant: Grant) -> dict:
        # The service account's secret is what gives its tokens: a Disconnect that kept it would connect again at
        # the next call. Forgotten on any account (it is never sent under another authentication anyway).
        return {"service_client_secret": None, "service_client_secret_base_url": ""} \
            if grant.service_client_secret is not None else {}

    def acting(self, grant: Grant) -> str:
        return f"as the account's connection ({jira_name(grant)})"

    def test_passed(self, grant: Grant, *, info: dict, display: str, warning: str) -> str:
        account = grant.grant_account
        return f"Connected to {provider_for(account).describe_site(info, account)} as {display}.{warning}"

    def test_failed(self, grant: Grant, exc: Exception) -> str:
        # Jira's error explained to an admin, with the buttons of the account's page.
        jira_error = getattr(exc, "jira_error", None)
        if jira_error is not None:
            return explain.describe("api", jira_error, advice=provider_for(grant.grant_account).advice)
        return str(exc)

    def not_connected(self, grant: Grant, actor: str) -> str:
        if self.by_client_credentials(grant):
            return ("This account is not connected to Jira: paste the service account's Client ID and Client "
                    "Secret and save.")
        return "This account is not connected to Jira yet: click Get Auth Token."

    def disconnected(self, grant: Grant, actor: str) -> tuple[str, str, bool]:
        return "Disconnected", "the tokens", False

    def link(self, grant: Grant) -> str:
        return grant.get_admin_url()


class PersonsOwn(GrantKind):
    """A person's own credential (user-based sync): the product acts in Jira as them, within their permissions."""

    key = ALMCredential.grant_kind
    model = ALMCredential
    label = "ALM credential"
    account_path = "account__"
    read_along = ("account", "user")
    # Whether Jira refuses the account's client (services.client_refused), and whether the person is active.
    fresh_along = {"account": ("client_refused_at", "client_checked_at"), "user": ("is_active",)}
    fixed_by = PERSON
    is_persons_own = True
    must_be_own_jira_user = True
    gone = "This Jira credential no longer exists: nothing was disconnected."

    def credential(self, grant: Grant) -> ALMCredential | None:
        return grant

    def usable(self) -> Q:
        return Q(user__is_active=True)

    def is_inactive(self, grant: Grant) -> bool:
        return not grant.user.is_active

    def holds_accounts_identity(self, grant: Grant) -> bool:
        return holds_accounts_identity(grant)

    def refusal_outlives_disconnect(self, grant: Grant) -> bool:
        # Else the person would be "not connected" and, under the default policy, act as the account's connection.
        return grant.status == GrantStatus.NEEDS_REAUTHORIZATION

    def name(self, grant: Grant) -> str:
        return f"{grant.grant_account.name} ({grant.grant_owner})"

    def acting(self, grant: Grant) -> str:
        return f"as Jira user {jira_name(grant)} ({grant.grant_owner}'s own connection)"

    def test_passed(self, grant: Grant, *, info: dict, display: str, warning: str) -> str:
        version = explain.plain_text(info.get("version"), 40) or "?"
        return f"Connected to Jira {version} as {display}."

    def not_connected(self, grant: Grant, actor: str) -> str:
        if actor == grant.grant_owner:
            return (f"Your Jira account is not connected to {grant.grant_account.name} yet: click Connect my Jira "
                    "account under My ALM Credentials.")
        return f"{grant.grant_owner} has not connected their Jira account to {grant.grant_account.name}."

    def disconnected(self, grant: Grant, actor: str) -> tuple[str, str, bool]:
        if actor == grant.grant_owner:
            return "Disconnected", "your tokens", True
        return f"Disconnected {grant.grant_owner}", "their tokens", False

    def still_refused(self, grant: Grant, actor: str) -> str:
        if not self.refusal_outlives_disconnect(grant):
            return ""
        account = grant.grant_account.name
        not_their_own = grant.last_error.startswith(NOT_THEIR_OWN_JIRA_USER)  # Test found another's Jira user
        if actor == grant.grant_owner:
            why = ("Your connection acted as a Jira user that is not yours" if not_their_own else
                   "Jira had stopped accepting your connection")
            return (f" {why}, so until you reconnect nothing is done in Jira for you on {account}: the account's own "
                    "connection is not used instead.")
        why = (f"{grant.grant_owner}'s connection acted as a Jira user that is not theirs" if not_their_own else
               f"Jira had stopped accepting {grant.grant_owner}'s connection")
        return (f" {why}, so until they reconnect nothing is done in Jira for them on {account}: the account's own "
                "connection is not used instead.")

    def problem_for_owner(self, grant: Grant, hint: str) -> str:
        # The refresh's own words name the admin's Get Auth Token, which is not theirs to click.
        if grant.status == GrantStatus.NEEDS_REAUTHORIZATION:
            return f" For {grant.grant_owner}: {hint}."
        return ""

    def recipients(self, grant: Grant, *, for_account: list[str], client_refused: bool) -> list[str]:
        # The person; and the account's recipients when the account refuses people without their own connection
        # (their work stops), but not about a removed link (told once for the whole account).
        account = grant.grant_account
        person = [grant.user.email] if grant.user.email else []
        if client_refused:
            return person
        if account.unconnected_users == ALMAccount.UnconnectedUsers.REFUSE or not person:
            return person + for_account
        return person

    def link(self, grant: Grant) -> str:
        return reverse("my_alm_credentials")


KINDS: dict[str, GrantKind] = {kind.key: kind for kind in (AccountsOwn(), PersonsOwn())}


def fresh_column(name: str, column: str) -> str:
    """The name of a fresh_along column on the locked grant."""
    return f"along_{name}_{column}"


def kind_of(grant: Grant) -> GrantKind:
    return KINDS[grant.grant_kind]


def jira_name(grant: Grant) -> str:
    return grant.connected_as_display_name or grant.connected_as_name or "Jira user unknown: not connected"


def holds_accounts_identity(credential: ALMCredential) -> bool:
    """Whether a person's credential is the Jira user the account's own connection acts as.

    Connecting as it is refused (services.authorization), but a credential stored before that rule, or an account
    connected afterwards as a person's Jira user, still holds it: through it the person would act as the account's
    administrator, whatever the policy for people without a connection. No query when the account was read with
    the credential (jira_calls, the screens).
    """
    name = credential.connected_as_name
    return bool(name) and name == credential.account.connected_as_name
