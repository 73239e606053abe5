"""Outcomes of the services turned into the words people read, where the words depend on whose grant it is.

Services decide (a refresh failed, a grant needs its owner to act) and ask here how to say it: the one reconnect
hint, and a refresh failure in the words of whoever can mend it (the administrator's Get Auth Token, or a person's
own page). The kind of grant (alm_accounts.kinds) says whose action mends it (`fixed_by`); Jira's errors
themselves are explained by the one table in alm_accounts.explain.
"""

from __future__ import annotations

from . import explain
from .jira import JiraError
from .kinds import ADMINISTRATOR, PERSON, kind_of
from .models import Grant
from .providers import provider_for

# The one reconnect hint: what the owner of a grant Jira stopped accepting (or that holds no tokens) does.
RECONNECT = {
    ADMINISTRATOR: "click Get Auth Token on the ALM account",
    PERSON: "reconnect under My ALM Credentials ({account})",
}
# Where its owner reconnects a grant, and the button they click there.
OWN_PAGE = {ADMINISTRATOR: "the ALM account's page", PERSON: "My ALM Credentials"}
RECONNECT_BUTTON = {ADMINISTRATOR: "Get Auth Token", PERSON: "Reconnect"}
# What mends a failed refresh, in the refresh advice (explain.ADMINISTRATOR_MENDS for an administrator).
MENDS = {
    ADMINISTRATOR: explain.ADMINISTRATOR_MENDS,
    PERSON: {"authorize_again": "Reconnect under My ALM Credentials", "mend": "reconnect under My ALM Credentials"},
}


def reconnect_hint(grant: Grant) -> str:
    return RECONNECT[kind_of(grant).fixed_by].format(account=grant.grant_account.name)


def where_to_reconnect(grant: Grant) -> tuple[str, str]:
    """(the page, the button) where the grant's owner connects it again."""
    fixed_by = kind_of(grant).fixed_by
    return OWN_PAGE[fixed_by], RECONNECT_BUTTON[fixed_by]


def refresh_failure(grant: Grant, exc: JiraError) -> str:
    """Jira's refresh failure in the words of whoever can fix it: the admin's button, or the person's page."""
    return explain.describe("refresh", exc, advice=provider_for(grant.grant_account).advice,
                            mends=MENDS[kind_of(grant).fixed_by])


def grant_problem(grant: Grant, problem: str) -> str:
    """Why a grant gave no token, with what its owner does about it where the problem's words name another's
    button."""
    return problem + kind_of(grant).problem_for_owner(grant, reconnect_hint(grant))


# Which of Atlassian's limits refused a call (RateLimit-Reason), in plain words.
RATE_LIMIT_REASONS = {
    "jira-quota-global-based": "the app's hourly points quota, shared by every site",
    "jira-quota-tenant-based": "the app's hourly points quota on this site",
    "jira-burst-based": "the per-second limit of this endpoint",
    "jira-per-issue-on-write": "the write limit of one issue",
}


def rate_limited(grant: Grant, limits) -> str:
    """Which limit refused a call, e.g. "Atlassian rate limit: jira-quota-tenant-based (the app's hourly points
    quota on this site)"; "" when the answer named none (Jira Data Center has one limit: the person's bucket)."""
    if limits is None or not limits.reason:
        return ""
    words = RATE_LIMIT_REASONS.get(limits.reason)
    return (f"{provider_for(grant.grant_account).rate_limit_label}: {limits.reason}"
            + (f" ({words})" if words else ""))
