"""The Jira Server / Data Center client: OAuth 2.0 provider calls and the REST API.

Built against how Jira DC really behaves (see shared/jira-dc-oauth2.md):
form-encoded token requests with client_id/client_secret in the body, one scope
name, PKCE S256, redirect_uri on refresh too, rotating refresh tokens.

No Django import here: this module is usable and testable on its own. It never
logs, and no secret ever goes into an exception message or a URL it builds.
The one exception is the authorize URL, which must carry the state (single use,
kept server-side only as a digest) and the PKCE challenge; never the verifier
or the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

AUTHORIZE_PATH = "/rest/oauth2/latest/authorize"
TOKEN_PATH = "/rest/oauth2/latest/token"
# Not in Atlassian's public docs; the provider plugin's resource is most likely here.
REVOKE_PATH = "/rest/oauth2/latest/revoke"
MYSELF_PATH = "/rest/api/2/myself"
SERVER_INFO_PATH = "/rest/api/2/serverInfo"

# A token answer is a few hundred bytes; anything this large is not Jira's.
MAX_BODY_BYTES = 1_000_000
# Longer than any plausible configuration (Jira's default is 1-2 h), shorter
# than "never expires": an absurd value is treated as a broken answer.
MAX_EXPIRES_IN = 366 * 24 * 3600
USER_AGENT = "kendis-integration/1.0 (+Jira DC OAuth 2.0 client)"


class JiraError(Exception):
    """Base class; the message is safe to show (it never contains a secret)."""


class JiraOAuthError(JiraError):
    """Jira answered with an OAuth error (`error` / `error_description`)."""

    def __init__(self, error: str, description: str = "", status: int | None = None):
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)


class JiraUnavailable(JiraError):
    """Jira could not be reached, or answered with something that is not a valid answer.

    `reached_jira` tells whether the request may have been processed by Jira
    (it matters for refresh tokens: a processed refresh has rotated the token).
    """

    def __init__(self, message: str, *, reached_jira: bool, retryable: bool = False, status: int | None = None):
        self.reached_jira = reached_jira
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class JiraUnauthorized(JiraError):
    """A REST call was refused with 401: the access token is expired, revoked or rotated away."""


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"

    def __repr__(self):  # never show tokens, even in a debugger or a traceback
        return f"TokenSet(expires_in={self.expires_in}, scope={self.scope!r})"


@dataclass(frozen=True)
class PKCE:
    verifier: str
    challenge: str

    @classmethod
    def create(cls) -> PKCE:
        # 64 random bytes -> 86 chars of [A-Za-z0-9_-]: inside Jira's [0-9a-zA-Z~\-._]{43,128}.
        verifier = secrets.token_urlsafe(64)
        return cls(verifier=verifier, challenge=s256_challenge(verifier))

    def __repr__(self):
        return "PKCE(<hidden>)"


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def session_for(base_url: str) -> requests.Session:
    """One pooled session per Jira origin, shared by threads (refresh_tokens --concurrency)."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    with _sessions_lock:
        session = _sessions.get(origin)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            # Proxies and .netrc from the environment would be surprising for
            # credentials traffic; trust only what the account says.
            session.trust_env = False
            _sessions[origin] = session
        return session


class JiraClient:
    """One Jira DC instance seen through one incoming application link."""

    def __init__(
        self,
        base_url: str,
        client_id: str = "",
        client_secret: str = "",
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.timeout = timeout
        self.session = session or session_for(self.base_url)

    def __repr__(self):
        return f"JiraClient({self.base_url!r}, client_id={self.client_id!r})"

    # --- OAuth 2.0 provider ---

    def authorization_url(self, *, redirect_uri: str, scope: str, state: str, code_challenge: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "state": state,
                "scope": scope,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.base_url}{AUTHORIZE_PATH}?{query}"

    def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    def refresh(self, *, refresh_token: str, redirect_uri: str) -> TokenSet:
        # Jira DC rejects a refresh without redirect_uri with a bare invalid_grant.
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "redirect_uri": redirect_uri}
        )

    def revoke(self, *, token: str, token_type_hint: str) -> None:
        form = {"token": token, "token_type_hint": token_type_hint, **self._client_auth()}
        with self._post(REVOKE_PATH, form) as response:  # streamed: close it to give the connection back
            status = response.status_code
        if status >= 400:
            raise JiraUnavailable(f"Jira answered HTTP {status} to the revocation", reached_jira=True)

    # --- REST API with a Bearer token ---

    def get(self, path: str, *, access_token: str) -> dict:
        try:
            response = self.session.get(
                self.base_url + path,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise _network_error(exc) from None
        with response:
            if response.status_code == 401:
                raise JiraUnauthorized("Jira refused the access token (HTTP 401)")
            body = _read_json(response)
            if response.status_code != 200 or not isinstance(body, dict):
                raise JiraUnavailable(
                    f"Jira answered HTTP {response.status_code} to {path}",
                    reached_jira=True,
                    status=response.status_code,
                )
            return body

    def myself(self, *, access_token: str) -> dict:
        return self.get(MYSELF_PATH, access_token=access_token)

    # --- internals ---

    def _client_auth(self) -> dict:
        # Jira takes client credentials as form parameters; HTTP Basic is not supported.
        return {"client_id": self.client_id, "client_secret": self._client_secret}

    def _post(self, path: str, form: dict) -> requests.Response:
        try:
            # `data=` sends application/x-www-form-urlencoded; a JSON body gets HTTP 500 from Jira.
            return self.session.post(
                self.base_url + path,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise _network_error(exc) from None

    def _token_request(self, form: dict) -> TokenSet:
        response = self._post(TOKEN_PATH, {**form, **self._client_auth()})
        with response:
            status = response.status_code
            body = _read_json(response)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            description = body.get("error_description")
            raise JiraOAuthError(body["error"], description if isinstance(description, str) else "", status)
        if status != 200:
            raise JiraUnavailable(
                f"Jira's token endpoint answered HTTP {status}"
                + (" (a redirect: check the Jira base URL)" if 300 <= status < 400 else ""),
                reached_jira=True,
                retryable=status in (429, 502, 503),
                status=status,
            )
        if not isinstance(body, dict):
            raise JiraUnavailable("Jira's token endpoint did not answer with JSON", reached_jira=True, status=status)
        return _token_set(body)


def _token_set(body: dict) -> TokenSet:
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access, str) or not access:
        raise JiraUnavailable("Jira's answer has no access token", reached_jira=True)
    if not isinstance(refresh, str) or not refresh:
        raise JiraUnavailable("Jira's answer has no refresh token", reached_jira=True)
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise JiraUnavailable(f"Jira issued a token of type {str(token_type)[:40]!r}, not bearer", reached_jira=True)
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdecimal():  # isdigit() would accept "²", which int() refuses
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= MAX_EXPIRES_IN:
        raise JiraUnavailable(f"Jira's answer has an invalid expires_in ({str(expires_in)[:40]})", reached_jira=True)
    scope = body.get("scope")
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        expires_in=expires_in,
        scope=scope if isinstance(scope, str) else "",
        token_type=token_type.lower(),
    )


def _read_json(response: requests.Response):
    """The JSON body, or None when it is not JSON (HTML error pages, garbage). Refuses oversized bodies."""
    try:
        raw = response.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
    except Exception:  # noqa: BLE001 - a body that cannot be read is no answer at all
        return None
    if len(raw) > MAX_BODY_BYTES:
        raise JiraUnavailable(
            f"Jira's answer is larger than {MAX_BODY_BYTES // 1000} kB, which no Jira answer is; check the Jira "
            "base URL",
            reached_jira=True,
        )
    try:
        text = raw.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know: JSON is UTF-8 anyway
        text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return None


def _network_error(exc: requests.RequestException) -> JiraUnavailable:
    # Only failures to open the connection are certain not to have reached
    # Jira: they are the only ones a refresh may retry (see services.refresh_account).
    if isinstance(exc, requests.ConnectTimeout):
        return JiraUnavailable("Jira did not accept the connection in time", reached_jira=False, retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return JiraUnavailable(
            "the TLS handshake with Jira failed (certificate not trusted, or not the host it claims)",
            reached_jira=False,
        )
    if isinstance(exc, requests.ReadTimeout):
        return JiraUnavailable("Jira did not answer in time", reached_jira=True)
    if isinstance(exc, requests.ConnectionError) and _is_connect_failure(exc):
        return JiraUnavailable(
            "Jira could not be reached (connection refused, or the host name does not resolve)",
            reached_jira=False,
            retryable=True,
        )
    if isinstance(exc, requests.ConnectionError):
        return JiraUnavailable("the connection to Jira broke before it answered", reached_jira=True)
    return JiraUnavailable(f"the request to Jira failed ({type(exc).__name__})", reached_jira=True)


def _is_connect_failure(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never made (refused, DNS failure)."""
    cause = exc.args[0] if exc.args else None
    while cause is not None:
        if isinstance(cause, (NewConnectionError, ConnectionRefusedError)):
            return True
        cause = getattr(cause, "reason", None)
    return False
