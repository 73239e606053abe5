"""The "which grants need attention" queries, in one place (the rule itself is models.is_due).

Both kinds of grant follow the same rules: a refresh token is present, Jira
has not refused the grant (needs re-authorization), Jira does not refuse its
account's client (a removed link: then one check every CLIENT_RECHECK, see
services.client_refused), and the access token expires within the window or
its expiry is unknown. A person's credential has
one more: an inactive person's credential is never refreshed or used.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import ALMAccount, ALMCredential, Grant, GrantStatus

# A removed link (Jira refuses the account's Client ID and Secret) is checked again this often, one token
# request per account; editing the credentials makes it checked at the next pass.
CLIENT_RECHECK = timedelta(hours=6)


def _refreshable(queryset: QuerySet, *, account: str = "") -> QuerySet:
    """`account`: the path from the grant to its ALM account ("" for the account's own, "account__")."""
    client_accepted = (Q(**{f"{account}client_refused_at__isnull": True})
                       | Q(**{f"{account}client_checked_at__isnull": True})
                       | Q(**{f"{account}client_checked_at__lte": timezone.now() - CLIENT_RECHECK}))
    return (queryset.filter(refresh_token__isnull=False).exclude(status=GrantStatus.NEEDS_REAUTHORIZATION)
            .filter(client_accepted))


def _due(queryset: QuerySet, within: timedelta) -> QuerySet:
    deadline = timezone.now() + within
    return queryset.filter(Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=deadline))


def refreshable_accounts() -> QuerySet[ALMAccount]:
    """Accounts holding a grant that is still worth keeping alive."""
    return _refreshable(ALMAccount.objects.all())


def refreshable_credentials() -> QuerySet[ALMCredential]:
    """People's own credentials still worth keeping alive; never an inactive person's."""
    return _refreshable(ALMCredential.objects.filter(user__is_active=True), account="account__")


def refreshable_grants(kind: str) -> QuerySet[Grant]:
    """refreshable_accounts ("account") or refreshable_credentials ("user"): see services.GrantRef."""
    return {"account": refreshable_accounts, "user": refreshable_credentials}[kind]()


def due_grants(kind: str, *, within: timedelta) -> QuerySet[Grant]:
    return _due(refreshable_grants(kind), within)
