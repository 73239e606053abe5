"""My ALM Credentials: where a person connects their own Jira account to each ALM account (user-based sync).

Every active staff user may use it; no ALM permission is needed, because all
it touches is the person's own credential (ALMCredential of the account and
request.user). It never reads another person's credential and never holds a
token: the list is read without the token columns, and the buttons hand the
credential to the same services the account's own connection uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper, Prefetch, Q, QuerySet
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from . import services
from .conf import app_settings
from .models import CLOUD_AUTHENTICATIONS, ALMAccount, ALMCredential, GrantStatus

TITLE = "My ALM Credentials"
ACCOUNTS_PER_PAGE = 50

POLICY_TEXT = {
    ALMAccount.UnconnectedUsers.ACT_AS_ACCOUNT: "The product acts as the account's connection until you connect.",
    ALMAccount.UnconnectedUsers.REFUSE: "You must connect to use this account.",
}
# Jira stopped accepting the person's connection: nothing is done for them, whatever the policy, until they reconnect.
REFUSED_UNTIL_RECONNECTED = ("Jira stopped accepting your connection: nothing is done in Jira for you until you "
                             "reconnect (the account's connection is not used instead).")
CONNECTED_TEXT = "You are connected: the product acts in Jira as you."

# The connection acts as a Jira user that is not the person's own (the account's, or another person's).
REFUSED_NOT_YOUR_OWN = ("Nothing is done in Jira for you until you reconnect as yourself (the account's connection "
                        "is not used instead).")

# --------------------------------------------------------------------------
# The query: a page of accounts and my own credential on each, in a fixed number of queries
# --------------------------------------------------------------------------


def ready_accounts() -> QuerySet[ALMAccount]:
    """The accounts people can connect to, in SQL: providers.Provider.is_ready (Client ID and Secret present;
    for Jira Cloud, the deployment's Atlassian app serves accounts without their own).

    The form stores a blank Client Secret as NULL, so "not NULL" is the same rule without decrypting it.
    """
    own_app = ~Q(client_id="") & Q(client_secret__isnull=False)
    if app_settings.ATLASSIAN_CLIENT_ID and app_settings.ATLASSIAN_CLIENT_SECRET:
        # Jira Cloud by consent or by a service account: people connect through the 3LO app either way.
        own_app |= Q(authentication__in=CLOUD_AUTHENTICATIONS, client_id="")
    return ALMAccount.objects.filter(own_app)


# What the page shows of a credential: never a token column (holds_tokens says whether there are any).
CREDENTIAL_COLUMNS = ["id", "account_id", "user_id", "status", "last_error", "token_expires_at", "token_scope",
                      "connected_as_name", "connected_as_display_name", "connected_at", "last_refreshed_at"]


def my_accounts(user) -> QuerySet[ALMAccount]:
    """Ready accounts by name, each with `mine`: a list holding the user's own credential, or empty.

    Two queries whatever the number of accounts (plus the paginator's COUNT): the accounts without secrets or
    tokens, and the user's credentials among them.
    """
    mine = (ALMCredential.objects.filter(user=user).only(*CREDENTIAL_COLUMNS)
            .annotate(holds_tokens=ExpressionWrapper(Q(refresh_token__isnull=False) | Q(access_token__isnull=False),
                                                     output_field=BooleanField())))
    # connected_as_name: whom the account's own connection acts as, which no person's credential may be.
    return (ready_accounts().only("id", "name", "base_url", "unconnected_users", "connected_as_name")
            .order_by("name", "pk")
            .prefetch_related(Prefetch("credentials", queryset=mine, to_attr="mine")))


@dataclass(frozen=True)
class Row:
    """One account on the page, in the person's words."""

    account: ALMAccount
    state: str  # "not_connected", "connected", "needs_reauthorization", "error"
    state_label: str
    expires_at: datetime | None
    problem: str
    policy: str
    can_test: bool
    can_disconnect: bool

    @property
    def connect_label(self) -> str:
        return "Connect my Jira account" if self.state == "not_connected" else "Reconnect"


def row_for(account: ALMAccount) -> Row:
    credential = account.mine[0] if account.mine else None
    policy = POLICY_TEXT.get(account.unconnected_users, POLICY_TEXT[ALMAccount.UnconnectedUsers.ACT_AS_ACCOUNT])
    holds_tokens = bool(credential is not None and credential.holds_tokens)
    status = credential.status if credential is not None else GrantStatus.NOT_CONNECTED
    row = functools.partial(Row, account=account, policy=policy, can_test=holds_tokens, can_disconnect=holds_tokens)
    if holds_tokens and credential.connected_as_name and credential.connected_as_name == account.connected_as_name:
        # Refused by services.jira_calls whatever its status: through it the person would act as the account.
        display = credential.connected_as_display_name or credential.connected_as_name
        return row(state="needs_reauthorization", state_label="Needs re-authorization", expires_at=None,
                   problem=f"This connection is Jira user {display}, the one the account's own connection acts as, "
                           "so it is not used. Log out of Jira, sign in to Jira as yourself, then click Reconnect.",
                   policy=REFUSED_NOT_YOUR_OWN)
    if status == GrantStatus.CONNECTED and holds_tokens:
        display = credential.connected_as_display_name or credential.connected_as_name or "an unnamed Jira user"
        # "Until you connect" is over: say what now holds instead of the policy for people without a connection.
        return row(state="connected", state_label=f"Connected as {display}", expires_at=credential.token_expires_at,
                   problem="", policy=CONNECTED_TEXT)
    if status == GrantStatus.NEEDS_REAUTHORIZATION:
        # Refused whatever the account's policy (services.jira_calls), also once Disconnect deleted the tokens.
        return row(state="needs_reauthorization", state_label="Needs re-authorization", expires_at=None,
                   problem=credential.last_error or "Jira no longer accepts this connection: click Reconnect.",
                   policy=REFUSED_NOT_YOUR_OWN if credential.last_error.startswith(services.NOT_THEIR_OWN_JIRA_USER)
                   else REFUSED_UNTIL_RECONNECTED)
    if status == GrantStatus.ERROR:
        return row(state="error", state_label="Not working", expires_at=None, problem=credential.last_error)
    # Not connected; Disconnect still offered if tokens were left behind (e.g. a failed earlier wipe).
    return row(state="not_connected", state_label="Not connected", expires_at=None, problem="", can_test=False)


# --------------------------------------------------------------------------
# Views (wrapped by admin.site.admin_view in `urls`: active staff only, CSRF, never cached)
# --------------------------------------------------------------------------


def my_credentials(request):
    page = Paginator(my_accounts(request.user), ACCOUNTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        **admin.site.each_context(request),
        "title": TITLE,
        "rows": [row_for(account) for account in page.object_list],
        "page_obj": page,
        "paginated": page.paginator.num_pages > 1,
    }
    return TemplateResponse(request, "alm_accounts/my_credentials.html", context)


def _back() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("my_alm_credentials"))


def _my_credential(request, account_id: int) -> ALMCredential | None:
    """The user's own credential on the account; never anyone else's. Without one, an unknown account and one not
    ready for people (not on the page) both answer 404: posting ids one by one names no hidden account."""
    credential = ALMCredential.objects.select_related("account", "user").filter(account_id=account_id,
                                                                               user=request.user).first()
    if credential is None:
        account = get_object_or_404(ready_accounts(), pk=account_id)
        messages.error(request, f"{account.name}: your Jira account is not connected yet. Click Connect my Jira "
                                "account.")
    return credential


@require_POST
def connect(request, account_id: int):
    """Send the person to Jira's consent page; the callback stores the grant on their own credential.

    An account that is not ready for people is not on the page: it answers as a missing one (404), so that
    posting ids one by one names no account."""
    account = get_object_or_404(ready_accounts(), pk=account_id)
    try:
        url = services.start_authorization(account=account, user=request.user, session=request.session,
                                           for_own_credential=True)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
        return _back()
    return HttpResponseRedirect(url)


@require_POST
def test(request, account_id: int):
    credential = _my_credential(request, account_id)
    if credential is not None:
        name = credential.account.name
        try:
            outcome = services.test_grant(grant=credential, actor=services.actor_of(request.user))
        except services.ServiceError as exc:
            messages.error(request, f"{name}: Test failed: {exc}")
        else:
            messages.success(request, f"{name}: {outcome}")
    return _back()


@require_POST
def disconnect(request, account_id: int):
    credential = _my_credential(request, account_id)
    if credential is not None:
        name = credential.account.name
        try:
            outcome = services.disconnect_grant(grant=credential, actor=services.actor_of(request.user))
        except services.ServiceError as exc:
            messages.error(request, f"{name}: Disconnect failed: {exc}")
        else:
            messages.add_message(request, messages.SUCCESS if outcome.confirmed else messages.WARNING,
                                 f"{name}: {outcome}")
    return _back()


def urls():
    """The page and its buttons, under /admin/my-alm-credentials/ (included before admin/ in the URLconf)."""
    wrap = admin.site.admin_view
    return [
        path("", wrap(my_credentials), name="my_alm_credentials"),
        path("<int:account_id>/connect/", wrap(connect), name="my_alm_credentials_connect"),
        path("<int:account_id>/test/", wrap(test), name="my_alm_credentials_test"),
        path("<int:account_id>/disconnect/", wrap(disconnect), name="my_alm_credentials_disconnect"),
    ]
