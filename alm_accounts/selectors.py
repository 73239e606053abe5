"""The "which grants need attention" queries, in one place (the rule itself is models.is_due).

Every kind of grant follows the same rules: it is kept alive (kinds.GrantKind.kept_alive: a refresh token is
present, Jira has not refused the grant, and its owner may use it: never an inactive person's credential), Jira
does not refuse its account's client (a removed link: then one check every CLIENT_RECHECK, see
services.client_refused), and the access token expires within the window or its expiry is unknown.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from .kinds import KINDS, GrantKind
from .models import Grant

# A removed link (Jira refuses the account's Client ID and Secret) is checked again this often, one token
# request per account; editing the credentials makes it checked at the next pass.
CLIENT_RECHECK = timedelta(hours=6)


def _client_accepted(kind: GrantKind) -> Q:
    """Jira does not refuse the grant's account's client, or that refusal is due to be checked again."""
    account = kind.account_path
    return (Q(**{f"{account}client_refused_at__isnull": True})
            | Q(**{f"{account}client_checked_at__isnull": True})
            | Q(**{f"{account}client_checked_at__lte": timezone.now() - CLIENT_RECHECK}))


def _due(kind: GrantKind, queryset: QuerySet, within: timedelta) -> QuerySet:
    # kinds.GrantKind.due: the access token expires within the window; a service account's check is due.
    return queryset.filter(kind.due(within))


def refreshable_grants(kind: str) -> QuerySet[Grant]:
    """The grants of one kind ("account", "user": kinds.KINDS) still worth keeping alive (kinds.GrantKind.kept_alive),
    less those of an account whose client Jira refuses until it is checked again."""
    grant_kind = KINDS[kind]
    accepted, independent = _client_accepted(grant_kind), grant_kind.without_the_link()
    return grant_kind.model.objects.filter(grant_kind.kept_alive()).filter(
        accepted if independent is None else accepted | independent)


def due_grants(kind: str, *, within: timedelta) -> QuerySet[Grant]:
    return _due(KINDS[kind], refreshable_grants(kind), within)
