"""What the product does about Jira's and Atlassian's rate limits: counted per provider, and a Jira host (per app)
near its limit is paced, within each caller's deadline.

The headers are read by the clients (alm_accounts.rate_limits.read); jira_calls and the token refresh hand what
they read here. A 429 is waited out by the caller's own rules (jira_calls: Retry-After, at most 30 s a wait, within
its budget; a refresh: within its deadline, and never counted as a failure of the grant).
"""

from __future__ import annotations

import logging

from .. import messages
from .. import rate_limits as limits_of
from ..conf import app_settings
from ..jira import Deadline, JiraClient
from ..models import Grant
from ..providers import provider_for
from ..rate_limits import RateLimit

log = logging.getLogger(__name__)

# A pacing pause leaves the call itself this much of its deadline (at least a connect).
CALL_NEEDS_SECONDS = 1.0


def observer(grant: Grant, client: JiraClient):
    """The on_limits callback of one call: counts the signal for /metrics, and paces the host when it is near."""
    provider = provider_for(grant.grant_account).metrics_name
    key = client.rate_limit_key

    def observe(limits: RateLimit) -> None:
        limits_of.COUNTS.add(provider, limits)
        if limits.near_limit:
            limits_of.PACING.slow_down(key, app_settings.JIRA_NEAR_LIMIT_PAUSE)
        if limits.refused:
            log.warning("Jira rate limit on %s%s: %s", grant.grant_account.name,
                        f" ({messages.rate_limited(grant, limits)})" if limits.reason else "",
                        f"asked to wait {limits.retry_after:g} s" if limits.retry_after is not None
                        else "no wait given")

    return observe


def pacing_pause(client: JiraClient, deadline: Deadline) -> float:
    """How long a call to this host (and app) waits before it is sent: what is left of the pacing set by a
    near-limit answer, at most JIRA_NEAR_LIMIT_PAUSE, and never so long that the call could not be made within its
    caller's deadline (0 then: the call goes, Jira answers 429 if it must)."""
    wait = min(limits_of.PACING.wait_for(client.rate_limit_key), app_settings.JIRA_NEAR_LIMIT_PAUSE)
    if wait <= 0 or wait + CALL_NEEDS_SECONDS > deadline.remaining():
        return 0.0
    return wait


def token_endpoint_wait(client: JiraClient) -> float:
    """Seconds this process still leaves the client's token endpoint alone, as its last 429 asked (0: none)."""
    return limits_of.TOKEN_ENDPOINTS.wait_for(client.token_rate_limit_key)


def token_endpoint_refused(client: JiraClient, limits: RateLimit | None) -> None:
    """The token endpoint answered 429: leave it alone for as long as it asked (nothing when it did not say)."""
    if limits is not None and limits.retry_after:
        limits_of.TOKEN_ENDPOINTS.slow_down(client.token_rate_limit_key, limits.retry_after)


def count(grant: Grant, limits: RateLimit | None) -> None:
    """Count a signal read outside a REST call (a token request refused with 429)."""
    if limits is not None:
        limits_of.COUNTS.add(provider_for(grant.grant_account).metrics_name, limits)
