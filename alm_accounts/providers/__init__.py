"""Which OAuth 2.0 provider an ALM account uses: the registry, and the names the rest of the app imports.

Jira Data Center (datacenter.py) and Jira Cloud (cloud.py) each fill in the Provider base (base.py); callers ask
`provider_for(account)` and never test for one. A new provider is one subclass and one entry in PROVIDERS.
"""

from __future__ import annotations

from ..models import ALMAccount
from .base import Provider, SiteNotCovered
from .cloud import Cloud, cloud_scope
from .datacenter import APPLICATION_LINKS, DataCenter

PROVIDERS: dict[str, Provider] = {provider.authentication: provider for provider in (DataCenter(), Cloud())}


def provider_for(account: ALMAccount) -> Provider:
    """The account's provider (an unknown authentication, e.g. a value from a later version: Data Center)."""
    return PROVIDERS.get(account.authentication) or PROVIDERS[ALMAccount.Authentication.JIRA_SERVER_OAUTH2]


__all__ = ["APPLICATION_LINKS", "PROVIDERS", "Cloud", "DataCenter", "Provider", "SiteNotCovered", "cloud_scope",
           "provider_for"]
