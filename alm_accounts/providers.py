"""Which OAuth 2.0 provider an ALM account uses, and everything that differs between them, in one place.

Jira Data Center (the customer's own Jira, an incoming application link per
account) and Jira Cloud (Atlassian's 3LO: one app of this deployment, sites
behind Atlassian's API gateway) share one grant lifecycle (services.grants,
services.authorization, services.connection). What differs is here, chosen by
the account's authentication: the protocol client, the callback URL, the scope
asked for, the site a consent must cover, who the grant belongs to, whether a
lost refresh answer may be retried, the consent's lifetime and how a grant is
removed at the provider. Services ask the provider; they never test for Cloud.
"""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse

from . import egress, explain
from .atlassian import CONNECTED_APPS_URL, AtlassianCloudClient, Site, site_origin
from .conf import app_settings
from .jira import Deadline, JiraClient, Secret
from .models import CLOUD_SCOPES, ALMAccount, callback_url_for

APPLICATION_LINKS = "Administration → Applications → Application links"


class SiteNotCovered(Exception):
    """The consent does not reach the account's site: nothing is stored. The message names what it covered."""


class DataCenter:
    authentication = ALMAccount.Authentication.JIRA_SERVER_OAUTH2
    label = "Jira Data Center"
    # Jira DC rotates the refresh token at once: a refresh whose answer was lost is never sent again.
    reuse_leeway: timedelta | None = None
    # Data Center's refresh tokens live 90 days by default, renewed by each refresh: no fixed end.
    consent_lifetime: timedelta | None = None
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
        """What happened and what to do when Jira refuses the account's client: for its administrators, or for a
        person, who can do nothing about it but ask."""
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
            f"deleted, create an incoming link again with the Redirect URL {self.callback_url(account)}, paste its "
            "new Client ID and Client Secret on the account's page and click Get Auth Token (each person reconnects "
            "under My ALM Credentials)."
        )

    def callback_url(self, account: ALMAccount) -> str:
        return callback_url_for(account.callback_id)

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

    def is_ready(self, account: ALMAccount) -> bool:
        client_id, secret = self.credentials(account)
        return bool(client_id) and secret not in (None, "")

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


class Cloud(DataCenter):
    authentication = ALMAccount.Authentication.JIRA_CLOUD_OAUTH2
    label = "Jira Cloud"
    # Atlassian accepts a replaced refresh token again for a short while (reported as 10 minutes); after it, the
    # reuse kills the whole token family. A lost answer is retried once, and only well inside that leeway.
    reuse_leeway = timedelta(minutes=5)
    # Every Cloud grant ends 365 days after its consent, refreshed or not.
    consent_lifetime = timedelta(days=365)
    consent_warning = timedelta(days=14)
    can_revoke = False  # Atlassian documents no revocation endpoint
    identity_label = "Atlassian account ID"
    advice = explain.CLOUD_ADVICE
    lifetime_hint = (
        "Atlassian ends a Jira Cloud grant after 90 days without a refresh and 365 days after its consent, however "
        "often it is refreshed."
    )

    # Atlassian answers an unknown app, or a wrong secret, with 401 access_denied "Unauthorized".
    client_refused_errors = frozenset({"invalid_client", "access_denied"})

    def client_refused_words(self, account: ALMAccount, *, for_person: bool) -> str:
        if for_person:
            return (f"Atlassian no longer accepts the app through which {account.name} connects to Jira Cloud (it "
                    "was removed, or its secret changed). There is nothing to do on your side: ask your "
                    f"administrator to repair the app used by {account.name}. Your connection works again once it "
                    "is (if the app had to be registered anew, reconnect under My ALM Credentials then).")
        whose = ("the account's own Client ID and Client Secret" if account.client_id
                 else "ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET")
        return (
            f"Atlassian refuses the app credentials of {account.name} ({whose}): the app was deleted in "
            f"{explain.CONSOLE}, or its secret was rotated there. None of the account's connections can be "
            "refreshed; they are not tried again until the credentials are edited (one check every few hours "
            f"meanwhile). What to do: in {explain.CONSOLE} → Settings, copy the app's current secret (or register "
            f"the app again with the Callback URL {self.callback_url(account)}) and set {whose} to it; if the app "
            "was registered anew, click Get Auth Token and let each person reconnect under My ALM Credentials."
        )

    def callback_url(self, account: ALMAccount) -> str:
        return cloud_callback_url()

    def requested_scope(self, account: ALMAccount) -> str:
        return cloud_scope(account.cloud_scopes)

    def asked_for(self, account: ALMAccount) -> str:
        return f"scopes {self.requested_scope(account)}"

    def not_ready(self, account: ALMAccount, *, for_own_credential: bool) -> str:
        if for_own_credential:
            return (f"{account.name} is not ready for personal connections yet: this deployment's Atlassian app is "
                    "not configured and the account has no Client ID and Secret of its own.")
        return ("This deployment's Atlassian app is not configured (ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET): "
                "register it in Atlassian's developer console with the Callback URL shown here, or paste the Client "
                "ID and Secret of your own app, save, then click Get Auth Token.")

    def credentials(self, account: ALMAccount) -> tuple[str, object]:
        """The account's own app when it has a Client ID (a customer running its own app), else the deployment's."""
        if account.client_id:
            return account.client_id, account.client_secret
        return app_settings.ATLASSIAN_CLIENT_ID, app_settings.ATLASSIAN_CLIENT_SECRET

    def secret_goes_to_base_url(self, account: ALMAccount) -> bool:
        return False  # it goes to ATLASSIAN_AUTH_URL, a deployment setting no admin screen can change

    def client(self, account: ALMAccount, *, client_id: str, secret: str, timeout) -> AtlassianCloudClient:
        api, auth = app_settings.ATLASSIAN_API_URL, app_settings.ATLASSIAN_AUTH_URL
        return AtlassianCloudClient(
            auth_url=auth, api_url=api, cloud_id=account.cloud_id, client_id=client_id, client_secret=secret,
            # An account's "Jira CA certificate (PEM)" is for a Data Center host: Atlassian's hosts, which receive
            # the deployment's ATLASSIAN_CLIENT_SECRET, are verified against the default trust only.
            timeout=timeout, verify=egress.default_verify(), proxies=egress.proxies_for(api),
            token_proxies=egress.proxies_for(auth),
        )

    def confirm_site(self, client, *, access_token: Secret, account: ALMAccount, deadline: Deadline) -> Site:
        """The consent must reach the account's site: its cloud id is where every REST call goes."""
        sites = client.accessible_resources(access_token=access_token, deadline=deadline)
        wanted = site_origin(account.base_url)
        for site in sites:
            if site_origin(site.url) == wanted:
                return site
        covered = ", ".join(str(site) for site in sites) or "no Jira site at all"
        raise SiteNotCovered(
            f"The consent on Atlassian's page covered {covered}, not {account.base_url}: nothing was stored. Click "
            "again and choose that site on Atlassian's consent page (or correct the site URL of the ALM account)."
        )

    def identity(self, me: dict) -> tuple[str, str]:
        # Jira Cloud has no user names: the Atlassian account ID is the stable identity.
        name = explain.plain_text(me.get("accountId"), 255)
        return name, explain.plain_text(me.get("displayName"), 255) or name

    def where_to_remove(self, *, account: ALMAccount, jira_user: str, owner: str, to_owner: bool) -> str:
        unknown = "Atlassian offers apps no way to revoke a grant, so it still exists at Atlassian until it expires: "
        if to_owner:
            return f"{unknown}you can remove the app from your Atlassian account under Connected apps " \
                   f"({CONNECTED_APPS_URL})."
        who = f"the Atlassian user {jira_user}" if jira_user else (f"the Atlassian user of {owner}" if owner else
                                                                  "the Atlassian user who gave consent")
        return f"{unknown}{who} can remove the app from their Atlassian account under Connected apps " \
               f"({CONNECTED_APPS_URL})."

    def describe_site(self, info: dict, account: ALMAccount) -> str:
        url = explain.plain_text(info.get("baseUrl"), 500) or account.base_url
        name = f"{account.cloud_site_name} " if account.cloud_site_name else ""
        return f"Jira Cloud site {name}({url})"


PROVIDERS = {provider.authentication: provider for provider in (DataCenter(), Cloud())}


def provider_for(account: ALMAccount) -> DataCenter:
    return PROVIDERS.get(account.authentication) or PROVIDERS[ALMAccount.Authentication.JIRA_SERVER_OAUTH2]


def cloud_callback_url() -> str:
    """The one callback URL of this deployment's Atlassian app (the state says which account and grant)."""
    return app_settings.PUBLIC_BASE_URL + reverse("alm_accounts:atlassian_callback")


def cloud_scope(scopes: str) -> str:
    """The scopes asked for, space-separated, in Atlassian's order, always with offline_access."""
    asked = set((scopes or "").split()) | {"offline_access"}
    return " ".join([s for s in CLOUD_SCOPES if s in asked] + sorted(asked - set(CLOUD_SCOPES)))
