"""The Jira Cloud client: Atlassian's OAuth 2.0 (3LO) authorization server and its API gateway.

The same client as Jira Data Center's (alm_accounts.jira.JiraClient: secrets
wrapped, bounded reads, deadlines, no cookies, paths that cannot leave the
API's base), with Atlassian's differences:

- the authorization server (https://auth.atlassian.com) and the API gateway
  (https://api.atlassian.com) are two hosts, each configured on its own;
- /authorize wants audience=api.atlassian.com, space-separated scopes and
  prompt=consent; PKCE is sent alongside the client secret;
- /oauth/token takes a JSON body; a dead refresh token answers 403 invalid_grant;
- a grant reaches sites (accessible-resources); REST calls go to
  {api}/ex/jira/{cloud id}/rest/api/3/...;
- there is no documented revocation endpoint.

No Django import here, like jira.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests

from .jira import (
    Deadline,
    JiraClient,
    JiraUnauthorized,
    JiraUnavailable,
    Secret,
    TokenSet,
    _read_json,
    session_for,
)

AUDIENCE = "api.atlassian.com"
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/oauth/token"
ACCESSIBLE_RESOURCES_PATH = "/oauth/token/accessible-resources"
MYSELF_PATH = "/rest/api/3/myself"
SERVER_INFO_PATH = "/rest/api/3/serverInfo"
# Where a person removes the app's access themselves (Atlassian documents no revocation endpoint).
CONNECTED_APPS_URL = "https://id.atlassian.com/manage-profile/apps"


@dataclass(frozen=True)
class Site:
    """One Jira Cloud site a grant reaches (an accessible resource)."""

    cloud_id: str
    url: str
    name: str

    def __str__(self):
        return f"{self.name} ({self.url})" if self.name else self.url


def site_origin(url: str) -> str:
    """https://example.atlassian.net from any spelling of a site URL (case, trailing slash, a path)."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:  # a malformed URL in an answer (a port that is no number): it matches no site
        return ""
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}" + (f":{port}" if port else "")


class AtlassianCloudClient(JiraClient):
    """One Jira Cloud site seen through one OAuth 2.0 (3LO) app."""

    myself_path = MYSELF_PATH
    server_info_path = SERVER_INFO_PATH

    def __init__(
        self,
        *,
        auth_url: str,
        api_url: str,
        cloud_id: str = "",
        client_id: str = "",
        client_secret: str = "",
        timeout: tuple[float, float] = (5.0, 30.0),
        verify: str | bool = True,
        proxies: dict | None = None,
        token_proxies: dict | None = None,
    ):
        self.auth_url = auth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.cloud_id = cloud_id
        # REST calls (and their path checks) are rooted at the site's base on the gateway; before the cloud id is
        # known (during consent) only the gateway's own resources are called.
        base = f"{self.api_url}/ex/jira/{cloud_id}" if cloud_id else f"{self.api_url}/ex/jira/-"
        super().__init__(base, client_id, client_secret, timeout=timeout, verify=verify, proxies=proxies)
        # `proxies` for the API gateway, `token_proxies` for the authorization server (JIRA_NO_PROXY may name one).
        self.token_session = session_for(self.auth_url, verify=verify, proxies=token_proxies)

    def __repr__(self):
        return f"AtlassianCloudClient({self.api_url!r}, cloud_id={self.cloud_id!r}, client_id={self.client_id!r})"

    @property
    def token_rate_limit_key(self) -> tuple[str, str]:
        """Token requests go to the authorization server, not the gateway: its own limit, per app."""
        parts = urlsplit(self.auth_url)
        return f"{parts.scheme}://{parts.netloc}", self.client_id

    # --- OAuth 2.0 (3LO) ---

    def authorization_url(self, *, redirect_uri: str, scope: str, state: str, code_challenge: str) -> str:
        query = urlencode(
            {
                "audience": AUDIENCE,
                "client_id": self.client_id,
                "scope": scope,
                "redirect_uri": redirect_uri,
                "state": state,
                "response_type": "code",
                "prompt": "consent",
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.auth_url}{AUTHORIZE_PATH}?{query}"

    def refresh(self, *, refresh_token: Secret, redirect_uri: str = "", deadline: Deadline | None = None) -> TokenSet:
        # Atlassian's refresh takes no redirect_uri.
        return self._token_request({"grant_type": "refresh_token", "refresh_token": Secret(refresh_token)}, deadline)

    def revoke(self, *, token: Secret, token_type_hint: str, deadline: Deadline | None = None) -> bool:
        """Atlassian documents no revocation endpoint: nothing is sent, nothing is confirmed."""
        return False

    def accessible_resources(self, *, access_token: Secret, deadline: Deadline | None = None) -> list[Site]:
        """The Jira sites this grant reaches."""
        url = f"{self.api_url}{ACCESSIBLE_RESOURCES_PATH}"  # the gateway's own resource, not a site's
        with self._send(self.session, "GET", url, deadline=deadline, bearer=access_token) as response:
            if response.status_code == 401:
                raise JiraUnauthorized("Atlassian refused the access token (HTTP 401)")
            body = _read_json(response, deadline)
            status = response.status_code
        if status != 200 or not isinstance(body.data, list):
            raise JiraUnavailable(f"Atlassian's accessible-resources answered HTTP {status} without a list of sites",
                                  reached_jira=True, status=status)
        sites = []
        for entry in body.data:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("url"), str):
                name = entry.get("name")
                sites.append(Site(entry["id"][:64], entry["url"][:500], name[:255] if isinstance(name, str) else ""))
        return sites

    def rest_url(self, path: str) -> str:
        if not self.cloud_id:
            raise JiraUnavailable("the Jira Cloud site of this account is not known yet (it is found when consent is "
                                  "given): click Get Auth Token", reached_jira=False)
        return super().rest_url(path)

    # --- internals ---

    def _send_token_request(self, fields: dict, deadline: Deadline | None) -> requests.Response:
        # Atlassian's token endpoint takes JSON (Data Center's takes a form), on the authorization server's host.
        return self._send(self.token_session, "POST", f"{self.auth_url}{TOKEN_PATH}", deadline=deadline,
                          secret_json={**fields, **self._client_auth()})
