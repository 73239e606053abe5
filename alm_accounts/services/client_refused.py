"""A removed link: Jira (or Atlassian) refuses the client credentials every grant of an account goes through.

When a Jira administrator deletes the incoming application link (or changes
its secret), Jira answers every refresh of every grant of that account with
`invalid_client` (Atlassian: `access_denied`), before it even looks at the
refresh token: no refresh can work until someone pastes new credentials. A
confirmed refusal (the provider's error for an unknown client, from the token
endpoint, on a grant that worked before) puts the *account* in its own state,
"client refused" (ALMAccount.client_refused_at):

- its grants are no longer refreshed: the refresher's selection leaves them
  out (selectors), and a refresh that comes anyway (on demand, --account) is
  answered here without asking Jira, except one check per account every
  selectors.CLIENT_RECHECK (the first grant to claim it asks Jira);
- the refresher counts these grants apart (RefreshOutcome.CLIENT_REFUSED),
  not as failures: a removed link does not turn every run into a failure;
- the account's recipients are told once, with what to do in Jira
  (services.alerts); each person whose credential stops is told to ask their
  Jira administrator, never advice meant for the administrator;
- it ends when the credentials are edited (services.connection.save_account:
  the next pass asks Jira again), or when any grant of the account works again
  (a check that succeeds, Get Auth Token, Connect): then the account's
  recipients are told once that it works again.

Every decision is taken under the row lock of the grant being refreshed, with
conditional updates of the account's row, so that any number of runners flip
the state (and raise its alert) exactly once.
"""

from __future__ import annotations

from django.db.models import Q

from ..jira import JiraOAuthError
from ..kinds import PERSON, kind_of
from ..models import Alert, ALMAccount, Grant
from ..providers import provider_for
from ..selectors import CLIENT_RECHECK
from . import alerts


def confirmed_by(grant: Grant, exc: Exception) -> bool:
    """Jira's answer says it refuses the client itself, and this grant worked before (it is not a typo in
    credentials that never worked: that is an ordinary failure)."""
    return (isinstance(exc, JiraOAuthError) and exc.error in provider_for(grant.grant_account).client_refused_errors
            and (grant.connected_at is not None or grant.last_refreshed_at is not None))


def ask_jira(grant: Grant, *, now, forced: bool = False) -> bool:
    """Under the grant's row lock, before a refresh: may it ask Jira? Always, unless the account's client is
    refused; then only the one check every CLIENT_RECHECK (claimed here by one grant of the account), or when
    someone forces the refresh (Refresh token now, refresh_tokens --force): a person asked for Jira's answer."""
    account = grant.grant_account
    if account.client_refused_at is None or forced:
        return True
    due = Q(client_checked_at__isnull=True) | Q(client_checked_at__lte=now - CLIENT_RECHECK)
    claimed = ALMAccount.objects.filter(due, pk=account.pk, client_refused_at__isnull=False).update(
        client_checked_at=now)
    return bool(claimed)


def record(grant: Grant, *, now) -> None:
    """Jira refused the client on this grant's refresh: the account enters the state, and its recipients are told
    (once: the first runner to flip it)."""
    account = grant.grant_account
    flipped = ALMAccount.objects.filter(pk=account.pk, client_refused_at__isnull=True).update(
        client_refused_at=now, client_checked_at=now)
    account.client_refused_at = account.client_checked_at = now
    if flipped:
        alerts.raise_alert(account, event=Alert.Event.BROKEN, reason=alerts.CLIENT_REFUSED,
                           detail=provider_for(account).client_refused_words(account, for_person=False), now=now)


def words_for(grant: Grant) -> str:
    """The grant's last error while its account's client is refused: for the administrator, or for the person."""
    account = grant.grant_account
    return provider_for(account).client_refused_words(account, for_person=kind_of(grant).fixed_by == PERSON)
