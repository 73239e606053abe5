"""Jira Cloud (Atlassian's OAuth 2.0 3LO): the deployment's Atlassian app, or an account's own.

Atlassian's auth and API hosts (deployment settings), the chosen scopes with offline_access, the site a consent
must cover (its cloud id is where every REST call goes), the Atlassian account ID as identity, a short reuse
leeway for a lost refresh answer, and the 365-day end of every consent.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .. import egress, explain
from ..atlassian import CONNECTED_APPS_URL, AtlassianCloudClient, Site, site_origin
from ..conf import app_settings
from ..jira import Deadline, Secret
from ..models import CLOUD_SCOPES, ALMAccount
from .base import Provider, SiteNotCovered

# "The access token is expired", "Invalid OAuth 2.0 token", "token invalid or expired": the gateway's words for a
# token it no longer accepts.
TOKEN_REFUSED = re.compile(r"\btoken\b.*\b(expired|invalid|revoked)\b|\b(expired|invalid|revoked)\b.*\btoken\b",
                           re.IGNORECASE)


class Cloud(Provider):
    """Jira Cloud through Atlassian's 3LO: one app of this deployment (or the account's own), sites behind
    Atlassian's API gateway."""

    authentication = ALMAccount.Authentication.JIRA_CLOUD_OAUTH2
    label = "Jira Cloud"
    metrics_name = "cloud"
    rate_limit_label = "Atlassian rate limit"
    # Atlassian accepts a replaced refresh token again for a short while (reported as 10 minutes); after it, the
    # reuse kills the whole token family. A lost answer is retried once, and only well inside that leeway.
    reuse_leeway = timedelta(minutes=5)
    # Every Cloud grant ends 365 days after its consent, refreshed or not.
    consent_lifetime = timedelta(days=365)
    consent_warning = timedelta(days=14)
    refresh_token_lifetime = timedelta(days=90)  # of inactivity: each refresh starts it again
    refresh_token_rule = "90 days without a refresh, and 365 days after the consent at most"
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
            f"the app again with the Callback URL {account.callback_url}) and set {whose} to it; if the app "
            "was registered anew, click Get Auth Token and let each person reconnect under My ALM Credentials."
        )

    def requested_scope(self, account: ALMAccount) -> str:
        return cloud_scope(account.cloud_scopes)

    def token_refused(self, status: int, messages: tuple[str, ...], *, expired: bool) -> bool:
        """Atlassian's gateway answers an expired or invalid access token with 403 (v1 paths) or 404 (v2/v3) as
        well as 401: such an answer means "token" when the token is expired by our clock or the answer says so.
        A 404 of a missing issue, with a token still valid and no word of it in the answer, is a real 404."""
        return status in (403, 404) and (expired or any(TOKEN_REFUSED.search(message) for message in messages))

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
        return site_reached(client, access_token=access_token, account=account, deadline=deadline, not_reached=(
            "The consent on Atlassian's page covered {covered}, not {site}: nothing was stored. Click again and "
            "choose that site on Atlassian's consent page (or correct the site URL of the ALM account)."))

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

    def token_host(self, account: ALMAccount) -> str:
        """Atlassian's authorization server: every Cloud grant, whatever its site or app, is refreshed there."""
        return site_origin(app_settings.ATLASSIAN_AUTH_URL)

    def token_requests_at_once(self) -> int:
        return app_settings.REFRESH_CONCURRENCY_ATLASSIAN


def cloud_scope(scopes: str) -> str:
    """The scopes asked for, space-separated, in Atlassian's order, always with offline_access."""
    asked = set((scopes or "").split()) | {"offline_access"}
    return " ".join([s for s in CLOUD_SCOPES if s in asked] + sorted(asked - set(CLOUD_SCOPES)))


def site_reached(client, *, access_token: Secret, account: ALMAccount, deadline: Deadline, not_reached: str) -> Site:
    """The account's site among those a token reaches (accessible-resources), matched by its origin; else
    SiteNotCovered in the words `not_reached` ({covered}: the sites it does reach, {site}: the account's)."""
    sites = client.accessible_resources(access_token=access_token, deadline=deadline)
    wanted = site_origin(account.base_url)
    for site in sites:
        if site_origin(site.url) == wanted:
            return site
    covered = ", ".join(str(site) for site in sites) or "no Jira site at all"
    raise SiteNotCovered(not_reached.format(covered=covered, site=account.base_url))
