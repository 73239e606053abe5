"""Service accounts: the account's own connection by OAuth 2.0 client credentials, on Data Center and on Cloud.

A Jira administrator (Data Center) or an organization admin (Atlassian administration) creates a service account
and gets a Client ID and Secret for it. The account's own connection then needs no consent and has no refresh
token: a token (about an hour) is asked for with those credentials whenever the cached one is about to expire
(services.service_accounts). Everything else is the provider it extends: people's own connections on the account
still go through the incoming application link (Data Center) or the 3LO app (Cloud), with the account's Client ID
and Client Secret.

Choices where Atlassian's pages are silent (docs/admin-guide.md, "Service accounts"):
- Data Center: the form body of the documented request with the account's Permission as scope, READ or WRITE
  only (what Data Center service accounts offer at first).
- Cloud: Atlassian documents only client_id and client_secret: no scope is sent (the credential's scopes were
  chosen when it was created); the JSON body of Atlassian's token endpoint; the site is found, as for 3LO, in
  accessible-resources, matched to the site URL.
"""

from __future__ import annotations

from .. import egress
from ..atlassian import AtlassianCloudClient
from ..jira import JiraClient
from ..models import ALMAccount
from .cloud import Cloud, site_reached
from .datacenter import DataCenter

# The scopes a Data Center service account can be given (at first): READ and WRITE.
DATA_CENTER_SERVICE_SCOPES = (ALMAccount.Scope.READ, ALMAccount.Scope.WRITE)


class ServiceAccount:
    """What both service-account providers add to their platform's provider (a mixin, listed first)."""

    client_credentials = True

    def own_connection_possible(self, account: ALMAccount) -> bool:
        return bool(account.service_client_id) and account.service_client_secret is not None

    def service_credentials(self, account: ALMAccount) -> tuple[str, object]:
        return account.service_client_id, account.service_client_secret


class DataCenterServiceAccount(ServiceAccount, DataCenter):
    """Jira Data Center: a service account's Client ID and Secret, sent to {base}/rest/oauth2/latest/token."""

    authentication = ALMAccount.Authentication.JIRA_SERVER_SERVICE_ACCOUNT
    label = "Jira Data Center (service account)"

    def service_scope(self, account: ALMAccount) -> str:
        return account.scope

    def service_client(self, account: ALMAccount, *, client_id: str, secret: str, timeout) -> JiraClient:
        return JiraClient(account.base_url, client_id, secret, timeout=timeout, **egress.client_options(account))

    def service_site(self, client, *, access_token, account: ALMAccount, deadline):
        """Data Center: the token is issued by the one Jira at the base URL."""
        return None


class CloudServiceAccount(ServiceAccount, Cloud):
    """Jira Cloud: a service account's OAuth 2.0 credential, sent to Atlassian's token endpoint; REST through the
    API gateway with the site's cloud id."""

    authentication = ALMAccount.Authentication.JIRA_CLOUD_SERVICE_ACCOUNT
    label = "Jira Cloud (service account)"

    def service_scope(self, account: ALMAccount) -> str:
        return ""  # the credential's scopes were chosen in Atlassian administration; Atlassian documents no scope

    def service_client(self, account: ALMAccount, *, client_id: str, secret: str, timeout) -> AtlassianCloudClient:
        return self.client(account, client_id=client_id, secret=secret, timeout=timeout)

    def service_site(self, client, *, access_token, account: ALMAccount, deadline):
        """The site of the account's site URL among those the service account reaches."""
        return site_reached(client, access_token=access_token, account=account, deadline=deadline, not_reached=(
            "The service account reaches {covered}, not {site}: nothing was stored. Correct the site URL, or give "
            "the service account access to that site in Atlassian administration."))
