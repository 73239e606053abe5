"""What every OAuth 2.0 provider must say: the Provider base that Jira Data Center and Jira Cloud both fill in.

The grant lifecycle (services.grants, services.authorization, services.connection) is one; it asks the account's
provider (providers.provider_for) for everything that differs: the protocol client, the scope asked for, the site
a consent must cover, who the grant belongs to in Jira, whether a lost refresh answer may be retried, the
consent's lifetime, how a grant is removed at the provider, and the provider's own words for its errors. A new
provider is one subclass here and one line in the registry (providers/__init__.py); services never test for one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import timedelta

from ..atlassian import Site
from ..jira import Deadline, Secret
from ..models import ALMAccount


class SiteNotCovered(Exception):
    """The consent does not reach the account's site: nothing is stored. The message names what it covered."""


class Provider(ABC):
    """One way of connecting an ALM account to Jira (ALMAccount.authentication says which)."""

    authentication: str  # the ALMAccount.Authentication value it serves
    label: str  # its name on the screens ("Jira Data Center")
    # How long a replaced refresh token is still accepted: a refresh whose answer was lost is sent again only well
    # inside it. None: the provider rotates at once, a lost answer is never sent again.
    reuse_leeway: timedelta | None = None
    # A fixed end of every grant after its consent, refreshed or not (None: no fixed end), and how long before it
    # the administrators are warned (services.alerts.consent_ending).
    consent_lifetime: timedelta | None = None
    consent_warning: timedelta | None = None
    can_revoke: bool  # whether it has an endpoint that ends a grant (services.connection)
    identity_label: str  # what its unique Jira user name is called on the screens
    advice: dict = {}  # its own words for its OAuth errors where they differ from explain.ADVICE
    lifetime_hint: str  # why a grant of it may end though it was refreshed (alerts)
    # The token endpoint's errors that mean "this client does not exist (any more), or its secret is not this"
    # (services.client_refused).
    client_refused_errors: frozenset[str]
    # The account's own connection is a service account's (OAuth 2.0 client credentials, providers/service_accounts):
    # no consent and no refresh token; a token is asked for with the service account's Client ID and Secret.
    # People's own connections on the account are the same either way.
    client_credentials = False

    def own_connection_possible(self, account: ALMAccount) -> bool:
        """The account's own connection can give a token without a person (a refresh token is stored)."""
        return account.refresh_token is not None

    @abstractmethod
    def client_refused_words(self, account: ALMAccount, *, for_person: bool) -> str:
        """What happened and what to do when it refuses the account's client: for its administrators, or for a
        person, who can do nothing about it but ask."""

    @abstractmethod
    def requested_scope(self, account: ALMAccount) -> str:
        """The scope sent on the authorize URL."""

    @abstractmethod
    def credentials(self, account: ALMAccount) -> tuple[str, object]:
        """(Client ID, Client Secret) the account's grants are obtained and refreshed with."""

    @abstractmethod
    def asked_for(self, account: ALMAccount) -> str:
        """The access asked for, in the audit trail's words."""

    @abstractmethod
    def not_ready(self, account: ALMAccount, *, for_own_credential: bool) -> str:
        """Why Get Auth Token (or a person's Connect) cannot start yet, and what to do."""

    def is_ready(self, account: ALMAccount) -> bool:
        """People can connect their own Jira account once the credentials are here."""
        client_id, secret = self.credentials(account)
        return bool(client_id) and secret not in (None, "")

    @abstractmethod
    def secret_goes_to_base_url(self, account: ALMAccount) -> bool:
        """The Client Secret is sent to the account's base URL (so it is bound to the URL it was entered for)."""

    @abstractmethod
    def client(self, account: ALMAccount, *, client_id: str, secret: str, timeout):
        """The Django-free protocol client for the account."""

    @abstractmethod
    def confirm_site(self, client, *, access_token: Secret, account: ALMAccount, deadline: Deadline) -> Site | None:
        """The site a new consent reaches (None where a grant can only be issued by the one Jira at the base URL);
        SiteNotCovered when it does not reach the account's."""

    @abstractmethod
    def identity(self, me: dict) -> tuple[str, str]:
        """(unique name, display name) of the Jira user from /myself."""

    @abstractmethod
    def where_to_remove(self, *, account: ALMAccount, jira_user: str, owner: str, to_owner: bool) -> str:
        """Where a grant that could not be revoked can be ended at the provider itself."""

    @abstractmethod
    def describe_site(self, info: dict, account: ALMAccount) -> str:
        """How Test connection names where it connected."""
