"""Jira's OAuth errors in words a Jira administrator understands - the one table.

Every message says what happened and what to do. Jira's own
`error_description` is appended by `describe()`; it never holds a secret.
"""

from __future__ import annotations

import unicodedata

from .jira import JiraError, JiraOAuthError, JiraUnauthorized, JiraUnavailable

# Embeddings, overrides, isolates and direction marks: they reorder the text around them when it is shown.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

LINK = "Jira's incoming application link (Administration → Applications → Application links)"

# (stage, error) -> advice. stage: "authorize" (Jira's redirect), "exchange" (code → tokens), "refresh".
ADVICE = {
    ("authorize", "access_denied"): "Access was denied on Jira's consent screen. Click Get Auth Token again and "
    "choose Allow.",
    ("authorize", "invalid_scope"): "Jira refused the Permission requested. Choose a Permission on this account "
    f"that is not higher than the one set on {LINK}, then click Get Auth Token again.",
    ("authorize", "unsupported_response_type"): "Jira refused the request type. Check that the Jira base URL points "
    "to Jira Server / Data Center 8.22 or later.",
    ("authorize", "invalid_request"): f"Jira refused the authorization request. Check the Client ID and that the "
    f"Redirect URL on {LINK} is exactly the Callback URL shown here.",
    ("authorize", "unauthorized_client"): f"Jira does not allow this client to ask for a code. Check the Client ID "
    f"copied from {LINK}.",
    ("authorize", "server_error"): "Jira had an internal error. Try again; if it persists, check Jira's logs.",
    ("authorize", "temporarily_unavailable"): "Jira is temporarily unavailable. Try again in a few minutes.",
    ("exchange", "invalid_client"): f"Jira did not accept the client credentials. Check the Client ID and the "
    f"Client Secret copied from {LINK}.",
    ("exchange", "invalid_grant"): f"Jira refused the authorization code: it expired or was already used, or the "
    f"Redirect URL on {LINK} is not exactly the Callback URL shown here. Click Get Auth Token again.",
    ("exchange", "invalid_request"): "Jira refused the token request as malformed. Check that the Jira base URL "
    "points to Jira Server / Data Center 8.22 or later.",
    ("exchange", "unsupported_grant_type"): "Jira refused the grant type. Check that the Jira base URL points to "
    "Jira Server / Data Center 8.22 or later.",
    ("refresh", "invalid_grant"): "Jira no longer accepts the refresh token (it expired — Jira Data Center's refresh "
    "tokens live 90 days by default, system property refresh.token.expiration.seconds — was revoked, or the "
    "application link changed). {authorize_again}.",
    ("refresh", "invalid_client"): f"Jira did not accept the client credentials. Check the Client ID and the Client "
    f"Secret on this account against {LINK}.",
}
# Jira Cloud (Atlassian's 3LO) where its words differ: no application link, Atlassian's consent page and app.
CONSOLE = "the app in Atlassian's developer console (developer.atlassian.com → your app)"
CLOUD_ADVICE = {
    ("authorize", "access_denied"): "Access was denied on Atlassian's consent page (Cancel), or the app is not "
    "shared with this site. Click again and choose Accept.",
    ("authorize", "invalid_scope"): f"Atlassian refused the scopes requested: enable the same scopes on {CONSOLE} → "
    "Permissions → Jira API, or choose fewer scopes on this account.",
    ("authorize", "invalid_request"): f"Atlassian refused the authorization request. Check the Client ID and that "
    f"the Callback URL of {CONSOLE} → Authorization is exactly the one shown here.",
    ("authorize", "unauthorized_client"): f"Atlassian does not allow this app to ask for a code. Check the Client ID "
    f"of {CONSOLE}.",
    ("exchange", "access_denied"): f"Atlassian did not accept the app's credentials. Check ATLASSIAN_CLIENT_ID and "
    f"ATLASSIAN_CLIENT_SECRET (or this account's own Client ID and Secret) against {CONSOLE} → Settings.",
    ("exchange", "invalid_client"): f"Atlassian did not accept the app's credentials. Check the Client ID and Secret "
    f"against {CONSOLE} → Settings.",
    ("exchange", "invalid_grant"): f"Atlassian refused the authorization code: it expired or was already used, or "
    f"the Callback URL of {CONSOLE} is not exactly the one shown here. Click again to authorize.",
    ("refresh", "invalid_grant"): "Atlassian no longer accepts the refresh token: it was unused for 90 days, the "
    "consent is more than 365 days old (Atlassian ends every grant a year after consent), the app was removed "
    "under the person's Connected apps, or a replaced refresh token was re-used. {authorize_again}.",
    ("refresh", "access_denied"): f"Atlassian did not accept the app's credentials. Check them against {CONSOLE} → "
    "Settings.",
    ("refresh", "invalid_client"): f"Atlassian did not accept the app's credentials. Check them against {CONSOLE} → "
    "Settings.",
    # Not Jira's base URL: a Cloud account's calls go to Atlassian's hosts (ATLASSIAN_AUTH_URL, ATLASSIAN_API_URL).
    "unavailable": "Check that this server can reach Atlassian (auth.atlassian.com and api.atlassian.com, through "
    "JIRA_PROXY_URL where one is set) and whether status.atlassian.com reports an outage, then try again.",
}
DEFAULT_ADVICE = {
    "authorize": "Jira refused the authorization. Check the account's settings and click Get Auth Token again.",
    "exchange": "Jira refused to issue tokens. Check the account's settings and click Get Auth Token again.",
    "refresh": "Jira refused to refresh the token. Try again; if it persists, {mend}.",
    "api": "Jira refused the request.",
}
# What mends a refresh failure, filled into the advice above ({authorize_again}, {mend}): by default the
# administrator's button; messages.refresh_failure gives a person's own words for a person's grant.
ADMINISTRATOR_MENDS = {"authorize_again": "Click Get Auth Token to authorize again", "mend": "click Get Auth Token"}
UNAVAILABLE_ADVICE = "Check the Jira base URL and that Jira is running and reachable from this server, then try again."


def plain_text(value, limit: int) -> str:
    """Text from Jira (or from its redirect) made safe to store and show, at most `limit` characters.

    PostgreSQL refuses NUL in text and a lone surrogate (valid in JSON) cannot be
    encoded: either would make the write fail, possibly after Jira has already
    acted (rotated the tokens). Control characters and line separators (U+2028:
    a new line in a log or a mail) become spaces. Characters that change the
    direction of the text are dropped: a Jira user's display name ends up inside
    our sentences ("Connected to Jira as ..."), and U+202E there would turn the
    rest of the sentence around.
    """
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch for ch in str(value or "")
                   if ch not in BIDI_CONTROLS)
    return text.strip()[:limit]


def oauth_error(stage: str, error: str, description: str = "", *, advice: dict | None = None,
                mends: dict | None = None) -> str:
    """`advice`: the provider's own words where they differ (providers.cloud.Cloud.advice); `mends`: what mends
    it, in the words of whoever must act (ADMINISTRATOR_MENDS unless told)."""
    error, description = plain_text(error, 100), plain_text(description, 500)
    advice = (advice or {}).get((stage, error)) or ADVICE.get((stage, error), DEFAULT_ADVICE[stage])
    advice = advice.format_map(mends or ADMINISTRATOR_MENDS)
    detail = f" Jira said: {error}" + (f" — {description}" if description else "")
    return advice + (detail + "." if error else "")


def describe(stage: str, exc: JiraError, *, advice: dict | None = None, mends: dict | None = None) -> str:
    """One sentence or two for a failed call to Jira at `stage`."""
    if isinstance(exc, JiraOAuthError):
        return oauth_error(stage, exc.error, exc.description, advice=advice, mends=mends)
    if isinstance(exc, JiraUnauthorized):
        return (
            "Jira refused the access token (HTTP 401). Click Refresh token now, or Get Auth Token to authorize again."
        )
    if isinstance(exc, JiraUnavailable):
        return f"Could not complete the call to Jira: {plain_text(exc, 500)}. " + (advice or {}).get(
            "unavailable", UNAVAILABLE_ADVICE)
    return f"The call to Jira failed: {exc}."
