"""The Jira Server / Data Center client: OAuth 2.0 provider calls and the REST API.

Built against how Jira DC really behaves:
form-encoded token requests with client_id/client_secret in the body, one scope
name, PKCE S256, redirect_uri on refresh too, rotating refresh tokens.

No Django import here: this module is usable and testable on its own. It never
logs, and no secret ever goes into an exception message or a URL it builds.
The one exception is the authorize URL, which must carry the state (single use,
kept server-side only as a digest) and the PKCE challenge; never the verifier
or the client secret.

Secrets (client secret, tokens, codes, verifiers) travel through this module
wrapped in `Secret`, and Jira's token answers in `_Body`: neither is a string
or a mapping, and their repr is hidden. Error reporters that print the local
variables of every frame (Django's error pages and mails, Sentry's frame
capture) therefore show "<hidden>" for them; a secret is revealed only inside
the expression that hands it to `requests`.
"""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit

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


class Secret:
    """A secret value that never shows itself: repr and str are hidden, and it is neither str nor a mapping."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if isinstance(value, Secret):
            value = value.reveal()
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self):
        return bool(self._value)

    def __eq__(self, other):
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    __hash__ = None

    def __repr__(self):
        return "<hidden>"

    __str__ = __repr__


def reveal(value: Secret | str) -> str:
    return value.reveal() if isinstance(value, Secret) else value


class Deadline:
    """One time budget for everything a call to Jira may take: connecting, reading, pauses between retries.

    A refresh holds its account's row lock while Jira answers; the deadline bounds that hold whatever
    Jira (or a proxy in front of it) does.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._ends - time.monotonic()

    def timeout(self, timeout: tuple[float, float]) -> tuple[float, float]:
        """(connect, read) timeouts for the next request, cut to what is left."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(self.seconds, reached_jira=False)
        return min(timeout[0], left), min(timeout[1], left)

    def allows_pause(self, seconds: float) -> bool:
        # A retry after the pause needs time of its own (at least a connect) to be worth it.
        return seconds + 1.0 < self.remaining()

    def __repr__(self):
        return f"Deadline({self.seconds} s, {max(0.0, self.remaining()):.1f} s left)"


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


class DeadlineExceeded(JiraUnavailable):
    """The call to Jira did not finish within its deadline (JIRA_REFRESH_DEADLINE)."""

    def __init__(self, seconds: float, *, reached_jira: bool):
        super().__init__(f"Jira did not answer within the {seconds:g} s deadline", reached_jira=reached_jira)


class InvalidPath(JiraError, ValueError):
    """A REST path that could leave the Jira host (or is not a path at all): nothing was sent."""


class JiraRESTError(JiraUnavailable):
    """Jira answered a REST call with an error status (other than 401); `messages` are Jira's own words."""

    def __init__(self, message: str, *, status: int, messages: tuple[str, ...] = (), retry_after: float | None = None):
        super().__init__(message, reached_jira=True, retryable=status in (429, 502, 503, 504), status=status)
        self.messages = messages
        self.retry_after = retry_after


class JiraUnauthorized(JiraError):
    """A REST call was refused with 401: the access token is expired, revoked or rotated away."""


@dataclass(frozen=True)
class TokenSet:
    access_token: Secret
    refresh_token: Secret | None  # None: a client-credentials token (a service account's), renewed by asking again
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


_sessions: dict[tuple, requests.Session] = {}
_sessions_lock = threading.Lock()


class _RejectAllCookies(http.cookiejar.DefaultCookiePolicy):
    """Jira answers Bearer calls with a JSESSIONID cookie. A pooled session serves every account (and every
    user) on one Jira host: a kept cookie would be sent with another identity's token, and Jira would act as
    the cookie's user. So no cookie is ever stored, hence none is ever sent."""

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


def session_for(base_url: str, *, verify: str | bool = True, proxies: dict | None = None) -> requests.Session:
    """One pooled session per (Jira origin, trusted CA file, proxy), shared by threads (refresh_tokens
    --concurrency). Keyed by trust and proxy too, so that one account's own CA never applies to another
    account on the same host.

    `verify` is True (certifi's CAs) or the path of a CA bundle file; it can never switch verification off.
    `proxies` is requests' mapping {"http": url, "https": url}, or None for a direct connection.
    """
    if verify is not True and not (isinstance(verify, str) and verify):
        raise ValueError("certificate verification of Jira calls cannot be switched off; pass a CA bundle path")
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    key = (origin, verify, tuple(sorted((proxies or {}).items())))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            # Uncompressed answers: a compressed one could keep a chunked read waiting past the deadline, and Jira's
            # answers are small anyway.
            session.headers["Accept-Encoding"] = "identity"
            session.cookies = requests.cookies.RequestsCookieJar(policy=_RejectAllCookies())
            # The environment's REQUESTS_CA_BUNDLE, HTTPS_PROXY / NO_PROXY and ~/.netrc are ignored: a
            # variable meant for another tool (or a .netrc with a password) would silently change where
            # credentials go and whom we trust. Trust and proxy are explicit (JIRA_CA_BUNDLE, JIRA_PROXY_URL,
            # the account's CA: alm_accounts/egress.py); with trust_env off requests uses exactly these two.
            session.trust_env = False
            session.verify = verify
            session.proxies = dict(proxies or {})
            _sessions[key] = session
        return session


# How many times a path is percent-decoded when looking for a dot segment: a proxy in front of Tomcat may decode
# once more; a path still encoded after this many decodings is refused.
DECODINGS = 4


def has_dot_segment(path: str) -> bool:
    """Whether a server on the way could read a '.' or '..' segment in `path` (no query), however it is spelled:
    percent-encoded (%2e), encoded again (%252e: a front proxy such as nginx or IIS decodes before Tomcat does), with
    Tomcat's ";parameters" ("..;x"), with '\\' or %5c as the separator (IIS and some proxies read it as '/'), or with
    a Unicode dot that normalisation turns into '.' (U+FF0E, U+2025)."""
    text = path
    for _ in range(DECODINGS):
        seen = unicodedata.normalize("NFKC", text).replace("\\", "/")
        if any(segment.split(";", 1)[0] in (".", "..") for segment in seen.split("/")):
            return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded
    return True


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
        verify: str | bool = True,
        proxies: dict | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = Secret(client_secret)
        self.timeout = timeout
        self.session = session or session_for(self.base_url, verify=verify, proxies=proxies)

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

    def exchange_code(
        self, *, code: Secret, redirect_uri: str, code_verifier: Secret, deadline: Deadline | None = None
    ) -> TokenSet:
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": Secret(code),
                "redirect_uri": redirect_uri,
                "code_verifier": Secret(code_verifier),
            },
            deadline,
        )

    def refresh(self, *, refresh_token: Secret, redirect_uri: str, deadline: Deadline | None = None) -> TokenSet:
        # Jira DC rejects a refresh without redirect_uri with a bare invalid_grant.
        return self._token_request(
            {"grant_type": "refresh_token", "refresh_token": Secret(refresh_token), "redirect_uri": redirect_uri},
            deadline,
        )

    def client_credentials(self, *, scope: str, deadline: Deadline | None = None) -> TokenSet:
        """A service account's token (OAuth 2.0 client credentials): no refresh token; when it expires, ask again.
        `scope` empty: none sent (Atlassian's service-account credentials carry their scopes)."""
        return self._token_request({"grant_type": "client_credentials", **({"scope": scope} if scope else {})},
                                   deadline, refresh_token=False)

    def revoke(self, *, token: Secret, token_type_hint: str, deadline: Deadline | None = None) -> bool:
        """True only when Jira answered 200. Jira DC documents no revocation endpoint: a redirect (an SSO
        proxy's login page), a 404 or anything else is not a confirmation."""
        form = {"token": Secret(token), "token_type_hint": token_type_hint, **self._client_auth()}
        with self._post(REVOKE_PATH, form, deadline) as response:  # streamed: close it to give the connection back
            return response.status_code == 200

    # --- REST API with a Bearer token ---

    def rest_url(self, path: str) -> str:
        """base_url + path, for a path that cannot leave this Jira (scheme, host and port stay the same).

        A path such as "@evil.example/x" or "//evil.example/x" would otherwise send the Bearer token to
        another host.
        """
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or path.startswith("//")
            or any(ch in path for ch in "\\#")
            or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in path)
            # requests resolves '.' and '..' segments before sending (a server may decode %2e too): "/../x" would
            # leave Jira's context path, or, on Jira Cloud's gateway, reach another site of the same grant.
            or has_dot_segment(path.split("?", 1)[0])
        ):
            raise InvalidPath(
                f"A Jira REST path must start with a single '/' and hold no spaces, backslashes, '#' or '.'/'..' "
                f"segments, however encoded and with or without ';parameters' (got {str(path)[:80]!r}); nothing was "
                "sent."
            )
        url = self.base_url + path
        base, built = urlsplit(self.base_url), urlsplit(url)
        if (built.scheme, built.netloc) != (base.scheme, base.netloc) or not built.path.startswith(base.path):
            raise InvalidPath(f"The path {path[:80]!r} would leave the Jira at {self.base_url}; nothing was sent.")
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        access_token: Secret,
        json=None,
        params: dict | None = None,
        deadline: Deadline | None = None,
    ):
        """Call a Jira REST resource with a Bearer token; Jira's parsed JSON answer (None when it has no body).

        Raises JiraUnauthorized on 401, JiraRESTError on any other error status (with Jira's errorMessages
        and a Retry-After when Jira sent one), JiraUnavailable when Jira cannot be reached.
        """
        url = self.rest_url(path)
        with self._send(self.session, method.upper(), url, deadline=deadline, bearer=access_token, params=params,
                        json=json) as response:
            status = response.status_code
            body = _read_json(response, deadline)
            messages = _error_messages(body)
            if status == 401 and not any("scope does not match" in message for message in messages):
                raise JiraUnauthorized("Jira refused the access token (HTTP 401)")
            # Jira Cloud answers a token without the scope a resource needs with 401 "scope does not match": a
            # refresh cannot fix that (the grant has the scopes of its consent), so it is an error like any other.
            if 200 <= status < 300:
                return body.data  # REST resources are not secrets: the caller gets them as they are
            raise JiraRESTError(
                f"Jira answered HTTP {status} to {method.upper()} {path.split('?', 1)[0]}"
                + (f" ({'; '.join(messages)[:300]})" if messages else ""),
                status=status,
                messages=messages,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )

    def get(self, path: str, *, access_token: Secret, deadline: Deadline | None = None) -> dict:
        body = self.request("GET", path, access_token=access_token, deadline=deadline)
        if not isinstance(body, dict):
            raise JiraUnavailable(f"Jira's answer to {path} is not a JSON object", reached_jira=True, status=200)
        return body

    def myself(self, *, access_token: Secret, deadline: Deadline | None = None) -> dict:
        return self.get(self.myself_path, access_token=access_token, deadline=deadline)

    # The REST resources every caller of this client relies on (Jira Cloud: version 3 of the same API).
    myself_path = MYSELF_PATH
    server_info_path = SERVER_INFO_PATH

    # --- internals ---

    def _client_auth(self) -> dict:
        # Jira takes client credentials as form parameters; HTTP Basic is not supported.
        return {"client_id": self.client_id, "client_secret": Secret(self._client_secret)}

    def _post(self, path: str, form: dict, deadline: Deadline | None) -> requests.Response:
        # A form (application/x-www-form-urlencoded): a JSON body gets HTTP 500 from Jira.
        return self._send(self.session, "POST", self.base_url + path, deadline=deadline, form=form)

    def _send(self, session: requests.Session, method: str, url: str, *, deadline: Deadline | None,
              bearer: Secret | None = None, form: dict | None = None, secret_json: dict | None = None,
              json=None, params: dict | None = None) -> requests.Response:
        """One request as every call to Jira makes it: redirects not followed, the answer streamed (read within
        bounds by _read_json), the deadline's time left as timeouts, network failures as JiraUnavailable.

        `bearer` (an access token), `form` and `secret_json` (bodies whose values may be Secrets) are revealed
        inside the expression that hands them to requests only (see the module docstring).
        """
        try:
            return session.request(
                method,
                url,
                params=params,
                data={name: reveal(value) for name, value in form.items()} if form is not None else None,
                json={name: reveal(value) for name, value in secret_json.items()} if secret_json is not None
                else json,
                headers={"Accept": "application/json",
                         **({"Authorization": f"Bearer {reveal(bearer)}"} if bearer is not None else {})},
                timeout=deadline.timeout(self.timeout) if deadline else self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise _network_error(exc, deadline) from None

    def _send_token_request(self, fields: dict, deadline: Deadline | None) -> requests.Response:
        return self._post(TOKEN_PATH, {**fields, **self._client_auth()}, deadline)

    def _token_request(self, form: dict, deadline: Deadline | None, *, refresh_token: bool = True) -> TokenSet:
        response = self._send_token_request(form, deadline)
        with response:
            status = response.status_code
            body = _read_json(response, deadline)
        error, description = body.get("error"), body.get("error_description")
        if isinstance(error, str):
            raise JiraOAuthError(error, description if isinstance(description, str) else "", status)
        if status != 200:
            raise JiraUnavailable(
                f"Jira's token endpoint answered HTTP {status}"
                + (" (a redirect: check the Jira base URL)" if 300 <= status < 400 else ""),
                reached_jira=True,
                retryable=status in (429, 502, 503),
                status=status,
            )
        if not body.is_object:
            raise JiraUnavailable("Jira's token endpoint did not answer with JSON", reached_jira=True, status=status)
        return _token_set(body, refresh_token=refresh_token)


class _Body:
    """Jira's parsed JSON answer, kept out of sight: a token answer holds both tokens (see Secret)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    @property
    def is_object(self) -> bool:
        return isinstance(self.data, dict)

    def get(self, name: str, default=None):
        return self.data.get(name, default) if isinstance(self.data, dict) else default

    def secret(self, name: str) -> Secret | None:
        value = self.get(name)
        return Secret(value) if isinstance(value, str) and value else None

    def __repr__(self):
        return "<Jira's answer, hidden>"


def _token_set(body: _Body, *, refresh_token: bool = True) -> TokenSet:
    access, refresh = body.secret("access_token"), body.secret("refresh_token") if refresh_token else None
    if access is None:
        raise JiraUnavailable("Jira's answer has no access token", reached_jira=True)
    if refresh is None and refresh_token:
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


READ_CHUNK_BYTES = 64 * 1024
MAX_RETRY_AFTER_SECONDS = 3600


def _error_messages(body: _Body) -> tuple[str, ...]:
    """Jira's REST errors: {"errorMessages": [...], "errors": {"field": "message"}}, as short plain lines."""
    messages = []
    listed = body.get("errorMessages")
    if isinstance(listed, list):
        messages += [str(m) for m in listed if isinstance(m, str)]
    single = body.get("message")  # Atlassian's gateway: {"code": 401, "message": "Unauthorized; scope does not match"}
    if isinstance(single, str):
        messages.append(single)
    fields = body.get("errors")
    if isinstance(fields, dict):
        messages += [f"{name}: {text}" for name, text in fields.items() if isinstance(text, str)]
    return tuple("".join(ch if ch.isprintable() else " " for ch in m)[:200] for m in messages[:10])


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in seconds (an HTTP date is rare from Jira: ignored)."""
    if value and value.strip().isdecimal():
        return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)
    return None


def _read_json(response: requests.Response, deadline: Deadline | None = None) -> _Body:
    """The JSON body (data None when it is not JSON: HTML error pages, garbage). Refuses oversized bodies.

    Read in chunks so that a Jira dripping its answer cannot hold the caller past its deadline.
    """
    return _Body(_parse_json(_read_body(response, deadline), response.encoding))


def _read_body(response: requests.Response, deadline: Deadline | None) -> bytearray | None:
    chunks = bytearray()
    try:
        while True:
            before = len(chunks)
            chunks += response.raw.read1(READ_CHUNK_BYTES, decode_content=True)  # read1: one recv per chunk
            if len(chunks) == before:
                break
            if len(chunks) > MAX_BODY_BYTES:
                chunks.clear()  # no copy of the answer stays in this frame
                raise JiraUnavailable(
                    f"Jira's answer is larger than {MAX_BODY_BYTES // 1000} kB, which no Jira answer is; check the "
                    "Jira base URL",
                    reached_jira=True,
                )
            if deadline is not None and deadline.remaining() <= 0:
                if response.raw.length_remaining == 0 or _is_json(chunks):
                    # The whole answer is here: a token answer must be kept (Jira has rotated), late or not.
                    break
                chunks.clear()
                raise DeadlineExceeded(deadline.seconds, reached_jira=True)
    except JiraUnavailable:
        raise
    except Exception:  # noqa: BLE001 - a body that cannot be read is no answer at all
        return None
    return chunks


def _is_json(raw: bytearray) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _parse_json(raw: bytearray | None, encoding: str | None):
    if raw is None:
        return None
    try:
        text = raw.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know: JSON is UTF-8 anyway
        text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return None


def _network_error(exc: requests.RequestException, deadline: Deadline | None = None) -> JiraUnavailable:
    # Only failures to open the connection are certain not to have reached
    # Jira: they are the only ones a refresh may retry (see services.refresh_account).
    if isinstance(exc, requests.ReadTimeout) and deadline is not None and deadline.remaining() <= 0.05:
        return DeadlineExceeded(deadline.seconds, reached_jira=True)
    if isinstance(exc, requests.exceptions.ProxyError):
        # The tunnel through the egress proxy was never opened: nothing reached Jira.
        return JiraUnavailable(
            "the egress proxy (JIRA_PROXY_URL) could not be reached or refused to open the connection to Jira",
            reached_jira=False,
            retryable=True,
        )
    if isinstance(exc, requests.ConnectTimeout):
        return JiraUnavailable("Jira did not accept the connection in time", reached_jira=False, retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return JiraUnavailable(
            "the TLS handshake with Jira failed (certificate not trusted, or not the host it claims); if Jira's "
            "certificate is signed by your company's CA, paste that CA's certificate into \"Jira CA certificate "
            "(PEM)\" or set JIRA_CA_BUNDLE",
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
