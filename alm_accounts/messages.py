"""Outcomes of the services turned into the words people read, where the words depend on whose grant it is.

Services decide (a refresh failed, a grant needs its owner to act) and ask here how to say it: the one reconnect
hint, and a refresh failure in the words of whoever can mend it (the administrator's Get Auth Token, or a person's
own page). The kind of grant (alm_accounts.kinds) says whose action mends it (`fixed_by`); Jira's errors
themselves are explained by the one table in alm_accounts.explain.
"""

from __future__ import annotations

from . import explain
from .jira import JiraError
from .kinds import ADMINISTRATOR, PERSON, SERVICE_ADMINISTRATOR, kind_of
from .models import Grant
from .providers import provider_for

# The one reconnect hint: what the owner of a grant Jira stopped accepting (or that holds no tokens) does.
RECONNECT = {
    ADMINISTRATOR: "click Get Auth Token on the ALM account",
    PERSON: "reconnect under My ALM Credentials ({account})",
    SERVICE_ADMINISTRATOR: "paste the service account's Client ID and Client Secret on the ALM account and save",
}
# Where its owner reconnects a grant, and the button they click there.
OWN_PAGE = {ADMINISTRATOR: "the ALM account's page", PERSON: "My ALM Credentials",
            SERVICE_ADMINISTRATOR: "the ALM account's page"}
RECONNECT_BUTTON = {ADMINISTRATOR: "Get Auth Token", PERSON: "Reconnect", SERVICE_ADMINISTRATOR: "Save"}
# What mends a failed refresh, in the refresh advice (explain.ADMINISTRATOR_MENDS for an administrator).
MENDS = {
    ADMINISTRATOR: explain.ADMINISTRATOR_MENDS,
    PERSON: {"authorize_again": "Reconnect under My ALM Credentials", "mend": "reconnect under My ALM Credentials"},
    SERVICE_ADMINISTRATOR: {
        "authorize_again": "Paste the service account's Client Secret on the ALM account again and save",
        "mend": "paste the service account's Client ID and Client Secret on the ALM account and save"},
}


# The account page's "Auth token" when none is stored.
NO_TOKEN_YET = {ADMINISTRATOR: "No token yet: click Get Auth Token.",
                SERVICE_ADMINISTRATOR: "No token yet: paste the service account's Client ID and Client Secret and "
                                       "save (Save gets a token at once)."}


def no_token_yet(grant: Grant) -> str:
    return NO_TOKEN_YET.get(kind_of(grant).mended_by(grant), NO_TOKEN_YET[ADMINISTRATOR])


def reconnect_hint(grant: Grant) -> str:
    return RECONNECT[kind_of(grant).mended_by(grant)].format(account=grant.grant_account.name)


def where_to_reconnect(grant: Grant) -> tuple[str, str]:
    """(the page, the button) where the grant's owner connects it again."""
    fixed_by = kind_of(grant).mended_by(grant)
    return OWN_PAGE[fixed_by], RECONNECT_BUTTON[fixed_by]


def refresh_failure(grant: Grant, exc: JiraError) -> str:
    """Jira's refresh failure in the words of whoever can fix it: the admin's button, or the person's page."""
    return explain.describe("refresh", exc, advice=provider_for(grant.grant_account).advice,
                            mends=MENDS[kind_of(grant).mended_by(grant)])


def grant_problem(grant: Grant, problem: str) -> str:
    """Why a grant gave no token, with what its owner does about it where the problem's words name another's
    button."""
    return problem + kind_of(grant).problem_for_owner(grant, reconnect_hint(grant))


# --- service accounts (services.service_accounts): the words of a Save that checks the credentials, and of a
# service account Jira stopped accepting ---

def service_account_refused(platform: str, where: str) -> str:
    """The token endpoint refused the service account's Client ID and Secret (invalid_client)."""
    return (f"{platform} refuses the service account's Client ID and Client Secret (invalid_client): the service "
            f"account was deleted or disabled, or its credential's secret was changed or revoked. In {where}, check "
            "the service account, create a new credential if needed, then paste its Client ID and Client Secret "
            "on the ALM account's page and save.")


SERVICE_ACCOUNT_WHERE = {
    "Jira": "Jira's administration (Service accounts)",
    "Atlassian": "Atlassian administration → Directory → Service accounts",
}


def service_scope_refused(platform: str, scope: str) -> str:
    return (f"{platform} refuses the scope asked for ({scope or 'the credential’s'}) for this service account "
            "(invalid_scope): a Data Center service account can be given READ or WRITE; choose the Permission the "
            "service account was given in Jira.")


SERVICE_SCOPE_ONLY_READ_WRITE = ("A Data Center service account can be given READ or WRITE only: choose Read or Write "
                                 "(the Permission the service account was given in Jira).")
SERVICE_ACCOUNT_NO_CONSENT = ("This account connects as a service account: there is no consent to give (no Get Auth "
                              "Token). Save checks its Client ID and Client Secret and connects it.")
SERVICE_CLIENT_ID_MISSING = "Paste the Client ID shown when the service account's OAuth 2.0 credential was created."
SERVICE_SECRET_MISSING = ("Paste the Client Secret shown when the service account's OAuth 2.0 credential was created "
                          "(it is stored encrypted and never shown again).")
SERVICE_SECRET_FOR_ANOTHER = ("Paste the service account's Client Secret again: the stored one was entered for "
                              "another Jira base URL or another authentication, and is sent only where it was "
                              "entered for.")


def service_myself_failed(detail: str) -> str:
    return ("The service account got a token, but reading /myself with it failed: nothing was stored. Check the "
            f"service account's scopes (it needs to read users: READ, or read:jira-user) ({detail}).")


def service_connected(display: str) -> str:
    return f"Connected as {display} (service account)."
