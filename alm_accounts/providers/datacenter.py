"""Jira Server / Data Center (8.22 or later): an incoming application link per ALM account.

The account's own Client ID and Secret, sent to the account's base URL (bound to it); the Permission of the link
as scope; refresh tokens rotated at once; a best-effort revocation.
"""

from __future__ import annotations

from datetime import timedelta

from .. import egress, explain
from ..atlassian import Site, site_origin
from ..conf import app_settings
from ..jira import Deadline, JiraClient, Secret
from ..models import ALMAccount
from .base import Provider

APPLICATION_LINKS = "Administration → Applications → Application links"
DEFAULT_PORTS = {"https": ":443", "http": ":80"}  # https://jira:443 is https://jira


class DataCenter(Provider):
    """Jira Server / Data Center: the customer's own Jira, one incoming application link per account."""

    authentication = ALMAccount.Authentication.JIRA_SERVER_OAUTH2
    label = "Jira Data Center"
    metrics_name = "datacenter"
    rate_limit_label = "Jira rate limit"
    # An expired, revoked or rotated-away token gets 401 from Jira Data Center, nothing else (Provider.token_refused).
    # Jira DC rotates the refresh token at once: a refresh whose answer was lost is never sent again.
    reuse_leeway: timedelta | None = None
    # Data Center's refresh tokens live 90 days by default, renewed by each refresh: no fixed end.
    consent_lifetime: timedelta | None = None
    refresh_token_lifetime = timedelta(days=90)  # refresh.token.expiration.seconds, counted from issue
    refresh_token_rule = "90 days from its last refresh (Jira's default, refresh.token.expiration.seconds)"
    can_revoke = True  # best effort: DC documents no endpoint, only a 200 counts (services.connection)
    identity_label = "Jira user name"
    advice: dict = {}  # explain.ADVICE as it is
    lifetime_hint = (
        "Jira Data Center's refresh tokens also have a maximum lifetime (90 days by default, the system property "
        "refresh.token.expiration.seconds): a connection that was not re-authorized within it ends this way."
    )

    # The token endpoint's errors that mean "this client does not exist (any more), or its secret is not this":
    # refused before the refresh token is looked at (services.client_refused).
    client_refused_errors = frozenset({"invalid_client"})

    def client_refused_words(self, account: ALMAccount, *, for_person: bool) -> str:
        if for_person:
            return (f"Jira no longer accepts the application link through which {account.name} connects (it was "
                    "removed, or its secret changed, in Jira). There is nothing to do on your side: ask your Jira "
                    f"administrator to repair the link used by {account.name}. Your connection works again once it "
                    "is (if the link had to be created anew, reconnect under My ALM Credentials then).")
        return (
            f"Jira refuses the Client ID and Client Secret of {account.name} (invalid_client): its incoming "
            f"application link was deleted in Jira, or the link's secret was changed there. None of the account's "
            f"connections can be refreshed; they are not tried again until its credentials are edited here (one "
            f"check every few hours meanwhile). What to do in Jira ({APPLICATION_LINKS}): if the link still exists, "
            "copy its Client Secret and paste it on the account's page (the connections go on working); if it was "
            f"deleted, create an incoming link again with the Redirect URL {account.callback_url}, paste its "
            "new Client ID and Client Secret on the account's page and click Get Auth Token (each person reconnects "
            "under My ALM Credentials)."
        )

    def requested_scope(self, account: ALMAccount) -> str:
        return account.scope

    def credentials(self, account: ALMAccount) -> tuple[str, object]:
        """(Client ID, Client Secret) of the link: the account's own."""
        return account.client_id, account.client_secret

    def asked_for(self, account: ALMAccount) -> str:
        """The access asked for, in the audit trail's words."""
        return f"Permission {account.scope}"

    def not_ready(self, account: ALMAccount, *, for_own_credential: bool) -> str:
        if for_own_credential:
            return (f"{account.name} is not ready for personal connections yet: an administrator must paste its "
                    "Client ID and Client Secret first.")
        return ("Paste the Client ID and Client Secret shown by Jira's incoming application link, save, then click "
                "Get Auth Token.")

    def secret_goes_to_base_url(self, account: ALMAccount) -> bool:
        """The Client Secret is sent to the account's base URL (so it is bound to the URL it was entered for)."""
        return True

    def client(self, account: ALMAccount, *, client_id: str, secret: str, timeout) -> JiraClient:
        return JiraClient(account.base_url, client_id, secret, timeout=timeout, **egress.client_options(account))

    def confirm_site(self, client, *, access_token: Secret, account: ALMAccount, deadline: Deadline) -> Site | None:
        """Data Center: a grant is issued by the one Jira at the base URL."""
        return None

    def identity(self, me: dict) -> tuple[str, str]:
        """(unique name, display name) of the Jira user from /myself."""
        name = explain.plain_text(me.get("name") or me.get("key"), 255)
        return name, explain.plain_text(me.get("displayName"), 255) or name

    def where_to_remove(self, *, account: ALMAccount, jira_user: str, owner: str, to_owner: bool) -> str:
        """Where a grant that could not be revoked can be ended at the provider itself."""
        unknown = "Jira Data Center documents no way for an application to revoke its tokens, so the grant may " \
                  "still exist in Jira: "
        if owner:
            # A person's grant: only their own profile, never the application link (that would end everyone's).
            if to_owner:
                who = f" (signed in to Jira as {jira_user})" if jira_user else ""
                return f"{unknown}you can remove it in your Jira profile{who} under Authorized applications."
            who = f"the Jira user {jira_user}" if jira_user else f"the Jira user of {owner}"
            return f"{unknown}{who} can remove it in their Jira profile under Authorized applications."
        who = f"the Jira user {jira_user}" if jira_user else "the Jira user who allowed access"
        return (
            f"{unknown}{who} can remove it in their Jira profile under Authorized applications, or a Jira "
            f"administrator can delete the incoming application link at {account.base_url} ({APPLICATION_LINKS}),"
            " which ends all of its grants."
        )

    def describe_site(self, info: dict, account: ALMAccount) -> str:
        """How Test connection names where it connected."""
        version = explain.plain_text(info.get("version"), 40) or "?"
        url = explain.plain_text(info.get("baseUrl"), 500) or account.base_url
        return f"Jira {version} at {url}"

    def token_host(self, account: ALMAccount) -> str:
        """The Jira at the base URL (its context path aside): each refresh takes its one cluster-wide lock."""
        origin = site_origin(account.base_url)
        default_port = DEFAULT_PORTS.get(origin.partition("://")[0])
        return origin.removesuffix(default_port) if default_port else origin

    def token_requests_at_once(self) -> int:
        # Jira DC serialises refreshes on one cluster-wide lock with a 10 s wait: more in flight only queue there.
        return app_settings.REFRESH_CONCURRENCY_PER_JIRA
