"""Which OAuth 2.0 provider an ALM account uses: the registry, and the names the rest of the app imports.

Jira Data Center (datacenter.py) and Jira Cloud (cloud.py) each fill in the Provider base (base.py); callers ask
`provider_for(account)` and never test for one. A new provider is one subclass and one entry in PROVIDERS.
"""

from __future__ import annotations

from ..models import ALMAccount
from .base import Provider, SiteNotCovered
from .cloud import Cloud, cloud_scope
from .datacenter import APPLICATION_LINKS, DataCenter
from .service_accounts import DATA_CENTER_SERVICE_SCOPES, CloudServiceAccount, DataCenterServiceAccount

PROVIDERS: dict[str, Provider] = {provider.authentication: provider for provider in (
    DataCenter(), Cloud(), DataCenterServiceAccount(), CloudServiceAccount())}
# The authentications whose account's own connection is a service account's (client credentials).
SERVICE_ACCOUNT_AUTHENTICATIONS = frozenset(key for key, provider in PROVIDERS.items() if provider.client_credentials)


def provider_for(account: ALMAccount) -> Provider:
    """The account's provider (an unknown authentication, e.g. a value from a later version: Data Center)."""
    return PROVIDERS.get(account.authentication) or PROVIDERS[ALMAccount.Authentication.JIRA_SERVER_OAUTH2]


__all__ = ["APPLICATION_LINKS", "DATA_CENTER_SERVICE_SCOPES", "PROVIDERS", "SERVICE_ACCOUNT_AUTHENTICATIONS", "Cloud",
           "CloudServiceAccount", "DataCenter", "DataCenterServiceAccount", "Provider", "SiteNotCovered", "cloud_scope",
           "provider_for"]
