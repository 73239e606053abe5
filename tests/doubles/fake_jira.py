"""One test double for Jira Data Center on a real socket: the OAuth 2.0 provider and a few REST resources.

Used wherever a test needs Jira over real HTTP (threads, processes, timeouts,
cookies, TLS) rather than `responses` at the `requests` level:

- **Grants that rotate like Jira's**: `add_grant(key, ...)` gives a grant
  refresh token RT-<key>-0 / access token AT-<key>-0; each refresh issues
  generation n+1 and kills the previous refresh *and* access token at once.
  A re-used refresh token gets `invalid_grant`; every request is counted.
- **Identities**: a Bearer call to `/rest/api/2/myself` answers as the Jira
  user of the grant that owns the access token, and sets a `JSESSIONID`
  cookie bound to that user, as Jira does. A request that carries a session
  cookie of *another* user is recorded in `identity_mismatches` (Jira would
  act as the cookie's user).
- **Scripted answers**: `json(path, payload)`, `html(...)`, `slow(...)`
  queue answers for a path; a queued answer is used before the behaviour
  above. `unscripted` lists the requests the behaviour answered instead, so a
  fully scripted test can check that every answer was its own.
- `latency` (seconds) delays every token answer: a slow Jira.
- **Outages and dead clients**: while `outage` holds an Answer (see `token_outage`), every token request gets
  it (Jira down for hours); `remove_client(client_id)` is a Jira admin deleting the incoming link: every token
  request with that Client ID gets 401 `invalid_client` (Cloud: 401 `access_denied` "Unauthorized", as
  Atlassian answers an unknown app), whatever the refresh token.
- **Overlap**: `max_token_in_flight` is the most token requests Jira was
  answering at once, `max_token_in_flight_per_host` the most per host the client
  called (scheme://host:port, as refresher.pacing names it; `token_in_flight_log`
  has each host's count and the total as each request arrived, `token_in_flight_by_host_log` every host's
  count at each arrival);
  `another_host()` serves the same fake on one more port, a Jira (or an
  Atlassian token endpoint) of its own for the client. `hold_token_requests(until_in_flight=n)` holds each token
  request until n are in flight (bounded by a timeout), so a test of parallel
  clients can prove they really overlapped instead of hoping they did.
- **Consents**: `add_code(code, key, ...)` is an authorization code Jira issued for a consent (Data Center);
  exchanging it (once) creates grant `key` and answers with its first pair, so /myself then answers as that
  consent's Jira user. `revoke` at REVOKE_PATH kills a live token (and its pair), lists it in `revoked` and
  answers 200.
- A token request that is not form-encoded gets HTTP 500, as from Jira DC.
- **Lifetimes and kills**: with `refresh_token_lifetime` (seconds) a refresh token older than that by `clock`
  (a callable giving seconds, time.time unless a test moves the app's clock) gets `invalid_grant`, as Data Center's
  refresh tokens do after 90 days; `kill(key)` is a grant revoked in Jira (its user deactivated, the application
  removed from their profile): its next refresh gets `invalid_grant`.
- An anonymous `/rest/api/2/serverInfo` (the base URL check before consent) is
  answered as Jira does, counted in `base_url_checks`, never from a queue.
- **Atlassian Cloud's token endpoint** too, at `auth_url` + /oauth/token: grants
  added with `cloud=True` are refreshed there only, with a JSON body and no
  redirect_uri; a re-used refresh token gets 403 invalid_grant, a form body 415.
- **Service accounts (client credentials)**: `add_service_account(client_id, client_secret, ...)` is a service
  account Jira DC (or, `cloud=True`, Atlassian) knows; `grant_type=client_credentials` with its Client ID and
  Secret gets a fresh access token (SA-<client id>-<n>, no refresh token) that /myself answers as the service
  account. `client_credentials_requests[client_id]` counts every such request (whatever the answer),
  `client_credentials_grants[client_id]` the tokens issued. `disable_service_account(client_id)` is a Jira admin
  disabling it: 401 invalid_client from then on, and its tokens stop working. DC: the scope must be among
  READ/WRITE and within the account's (else 400 invalid_scope); Cloud: an optional scope within the
  credential's (else 403 invalid_scope), a wrong secret 401 access_denied, as the sandbox (docs/sandbox.md).
- **Atlassian's API gateway**, at `api_url` (/cloud-api): `GET /oauth/token/accessible-resources` (one site,
  CLOUD_ID) and `GET /ex/jira/CLOUD_ID/rest/api/{2,3}/myself` for a live Cloud token; anything else 401/404.

Start it with the `fake_jira` fixture (tests/conftest.py) or as a context
manager; `https=True` with a `trustme` CA serves TLS.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PREFIX = "/jira"  # Jira keeps its context path: {base}/rest/...
TOKEN_PATH = f"{PREFIX}/rest/oauth2/latest/token"
REVOKE_PATH = f"{PREFIX}/rest/oauth2/latest/revoke"
MYSELF_PATH = f"{PREFIX}/rest/api/2/myself"
SERVER_INFO_PATH = f"{PREFIX}/rest/api/2/serverInfo"
CLOUD_AUTH_PREFIX = "/cloud-auth"  # the stand-in for https://auth.atlassian.com (ATLASSIAN_AUTH_URL)
CLOUD_TOKEN_PATH = f"{CLOUD_AUTH_PREFIX}/oauth/token"
CLOUD_API_PREFIX = "/cloud-api"  # the stand-in for https://api.atlassian.com (ATLASSIAN_API_URL)
CLOUD_ID = "9e1f6a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
CLOUD_SITE_URL = "https://fake-jira.atlassian.net"
DC_SERVICE_ACCOUNT_SCOPES = ("READ", "WRITE")


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Call:
    method: str
    path: str  # with the query string
    headers: dict
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace"), keep_blank_values=True).items()}


@dataclass
class Grant:
    key: str
    redirect_uri: str
    client_id: str
    client_secret: str
    user: str
    display_name: str
    generation: int = 0
    cloud: bool = False
    issued_at: float = 0.0  # by FakeJira.clock: when its current refresh token was issued


@dataclass
class ServiceAccount:
    client_id: str
    client_secret: str
    user: str
    display_name: str
    scope: str  # DC: the highest of READ/WRITE it may ask for; Cloud: the credential's scopes, space-separated
    cloud: bool = False
    expires_in: int = 3600
    disabled: bool = False
    issued: int = 0


class FakeJira:
    def __init__(self, *, latency: float = 0.0, tls_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.latency = latency
        self.lock = threading.Lock()
        self.grants: dict[str, Grant] = {}
        self.live_refresh: dict[str, str] = {}  # live refresh token -> grant key
        self.live_access: dict[str, str] = {}  # live access token -> grant key
        self.sessions: dict[str, str] = {}  # JSESSIONID -> Jira user
        self.refreshes: Counter[str] = Counter()  # grant key -> successful refreshes
        self.codes: dict[str, Grant] = {}  # authorization code -> the grant its exchange creates
        self.revoked: list[str] = []  # tokens revoked at REVOKE_PATH
        self.rejected: list[str] = []  # why requests were refused (re-used token, bad request)
        self.identity_mismatches: list[str] = []
        self.answers: dict[str, deque[Answer]] = defaultdict(deque)
        self.calls: list[Call] = []
        self.unexpected: list[str] = []
        self.token_requests_started = threading.Semaphore(0)  # released when a token request arrives
        self.base_url_checks: list[str] = []  # anonymous serverInfo calls (services.site_check), answered as Jira
        self.unscripted: list[str] = []  # requests answered by the behaviour above, not by a queued answer
        self.token_in_flight = 0
        self.max_token_in_flight = 0
        self.token_in_flight_per_host: Counter[str] = Counter()
        self.max_token_in_flight_per_host: Counter[str] = Counter()
        self.token_in_flight_log: list[tuple[str, int, int]] = []  # (host, its in flight, all in flight) on arrival
        self.token_in_flight_by_host_log: list[dict[str, int]] = []  # every host's in flight, on each arrival
        self._in_flight_changed = threading.Condition()
        self._hold_until: int | None = None  # see hold_token_requests
        self._hold_timeout = 0.0
        self.outage: Answer | None = None
        self.removed_clients: set[str] = set()
        self.clock = time.time
        self.refresh_token_lifetime: float | None = None
        self.expired: list[str] = []  # grant keys whose refresh token was refused as too old
        self.service_accounts: dict[str, ServiceAccount] = {}  # client id -> service account
        self.client_credentials_requests: Counter[str] = Counter()  # client id -> client_credentials requests
        self.client_credentials_grants: Counter[str] = Counter()  # client id -> tokens issued to it
        self._host, self._tls_context = host, tls_context
        self.scheme = "https" if tls_context is not None else "http"
        self._servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []
        origin = self.another_host()
        self.server, self.thread = self._servers[0]
        self.base_url = f"{origin}{PREFIX}"
        self.auth_url = f"{origin}{CLOUD_AUTH_PREFIX}"
        self.api_url = f"{origin}{CLOUD_API_PREFIX}"

    def another_host(self) -> str:
        """This fake served on one more port, as scheme://host:port: another Jira to the client, same behaviour and
        counts (its base URL: + PREFIX; as Atlassian's token endpoint: + CLOUD_AUTH_PREFIX)."""
        server = ThreadingHTTPServer((self._host, 0), self._handler())
        server.daemon_threads = True
        if self._tls_context is not None:
            server.socket = self._tls_context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._servers.append((server, thread))
        return f"{self.scheme}://{self._host}:{server.server_address[1]}"

    # --- set-up ---

    def add_grant(self, key: str, *, redirect_uri: str, client_id: str, client_secret: str, user: str = "",
                  display_name: str = "", cloud: bool = False) -> tuple[str, str]:
        """A grant as Jira (or, `cloud`, Atlassian) holds it after consent; returns its first (access, refresh) pair."""
        with self.lock:
            grant = Grant(key, redirect_uri, client_id, client_secret, user or f"user-{key}",
                          display_name or f"User {key}", cloud=cloud, issued_at=self.clock())
            self.grants[key] = grant
            access, refresh = self.current_tokens(key)
            self.live_refresh[refresh] = key
            self.live_access[access] = key
        return access, refresh

    def add_code(self, code: str, key: str, *, redirect_uri: str, client_id: str, client_secret: str, user: str = "",
                 display_name: str = "") -> None:
        """An authorization code from a consent by Jira user `user`: its exchange creates grant `key`."""
        with self.lock:
            self.codes[code] = Grant(key, redirect_uri, client_id, client_secret, user or f"user-{key}",
                                     display_name or f"User {key}")

    def add_service_account(self, client_id: str, client_secret: str, *, user: str = "", display_name: str = "",
                            scope: str = "", cloud: bool = False, expires_in: int = 3600) -> None:
        """A service account with an OAuth 2.0 credential (Client ID and Secret), on Data Center or (`cloud`) Cloud."""
        if not cloud and scope not in ("", *DC_SERVICE_ACCOUNT_SCOPES):
            raise ValueError(f"A Data Center service account's scope is READ or WRITE, not {scope!r}")
        with self.lock:
            self.service_accounts[client_id] = ServiceAccount(
                client_id, client_secret, user or f"service-{client_id}", display_name or f"Service {client_id}",
                scope or ("read:jira-work write:jira-work read:jira-user" if cloud else "WRITE"), cloud=cloud,
                expires_in=expires_in)

    def disable_service_account(self, client_id: str) -> None:
        """A Jira admin disabled the service account: its token requests get invalid_client, its tokens stop."""
        with self.lock:
            self.service_accounts[client_id].disabled = True
            key = _service_key(client_id)
            for token in [token for token, owner in self.live_access.items() if owner == key]:
                del self.live_access[token]

    def is_live(self, key: str) -> bool:
        """Whether Jira still accepts grant `key` (its current refresh token is live)."""
        with self.lock:
            return key in self.grants and self.current_tokens(key)[1] in self.live_refresh

    def current_tokens(self, key: str) -> tuple[str, str]:
        n = self.grants[key].generation
        return f"AT-{key}-{n}", f"RT-{key}-{n}"

    def json(self, path: str, payload, status: int = 200, *, headers: dict | None = None, delay: float = 0.0):
        self.answers[path].append(Answer(status, json.dumps(payload).encode(),
                                         {"Content-Type": "application/json", **(headers or {})}, delay))

    def html(self, path: str, status: int, text: str, *, headers: dict | None = None):
        self.answers[path].append(Answer(status, text.encode(), {"Content-Type": "text/html", **(headers or {})}))

    def slow(self, path: str, seconds: float):
        self.answers[path].append(Answer(200, b"{}", {"Content-Type": "application/json"}, delay=seconds))

    def token_outage(self, status: int = 503, text: str = "<html>Service Unavailable</html>") -> None:
        """Every token request gets this answer until `outage` is set back to None."""
        self.outage = Answer(status, text.encode(), {"Content-Type": "text/html"})

    def kill(self, key: str) -> None:
        """Grant `key` revoked in Jira: its tokens are refused from now on."""
        with self.lock:
            access, refresh = self.current_tokens(key)
            self.live_refresh.pop(refresh, None)
            self.live_access.pop(access, None)

    def remove_client(self, client_id: str) -> None:
        """A Jira admin deleted the incoming link of this Client ID: its token requests are refused from now on."""
        with self.lock:
            self.removed_clients.add(client_id)

    def pending(self) -> dict[str, int]:
        return {path: len(queue) for path, queue in self.answers.items() if queue}

    def calls_to(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path.split("?", 1)[0] == path]

    def hold_token_requests(self, *, until_in_flight: int, timeout: float = 10.0) -> None:
        """Hold token requests until `until_in_flight` of them are in flight at once, then answer them all.

        For tests of parallel clients: a client that can have at most k requests in flight cannot
        get past `until_in_flight=k+1` alone, so `max_token_in_flight` then proves that several
        clients overlapped. If they never do, the requests held are answered after `timeout` seconds
        (keep it under the client's own deadline), no later one is held, and `max_token_in_flight`
        tells the test so.
        """
        with self._in_flight_changed:
            self._hold_until, self._hold_timeout = until_in_flight, timeout

    # --- Jira's behaviour ---

    def token(self, form: dict[str, str], *, cloud: bool = False) -> tuple[int, dict, dict]:
        if self.latency:
            time.sleep(self.latency)
        sent = form.get("refresh_token", "")
        with self.lock:
            if form.get("client_id") in self.removed_clients:
                # The client is authenticated before anything else: its refresh token is not even looked at.
                self.rejected.append(f"removed client {form.get('client_id')}")
                if cloud:
                    return 401, {"error": "access_denied", "error_description": "Unauthorized"}, {}
                return 401, {"error": "invalid_client"}, {}
            if form.get("grant_type") == "client_credentials":
                return self._client_credentials(form, cloud=cloud)
            key = self.live_refresh.get(sent)
            grant = self.grants.get(key) if key else None
            if form.get("grant_type") == "authorization_code" and not cloud:
                return self._exchange(form)
            if form.get("grant_type") != "refresh_token":
                self.rejected.append(f"unsupported grant {form.get('grant_type')!r}")
                return 400, {"error": "unsupported_grant_type"}, {}
            if grant is None:
                self.rejected.append(f"re-used or unknown refresh token {sent}")
                if cloud:
                    return 403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}, {}
                return 400, {"error": "invalid_grant", "error_description": "Refresh token is invalid"}, {}
            lifetime = self.refresh_token_lifetime
            if lifetime is not None and self.clock() - grant.issued_at > lifetime:
                self.expired.append(key)
                self.rejected.append(f"expired refresh token of {key}")
                return 400, {"error": "invalid_grant", "error_description": "Refresh token expired"}, {}
            if grant.cloud != cloud:
                self.rejected.append(f"{key} sent to the {'Cloud' if cloud else 'Data Center'} token endpoint")
                return 400, {"error": "invalid_grant"}, {}
            if (form.get("client_id"), form.get("client_secret")) != (grant.client_id, grant.client_secret):
                self.rejected.append(f"bad client credentials for {key}")
                return 401, {"error": "invalid_client"}, {}
            if not cloud and form.get("redirect_uri") != grant.redirect_uri:
                self.rejected.append(f"wrong redirect_uri for {key}: {form.get('redirect_uri')!r}")
                return 400, {"error": "invalid_grant"}, {}
            old_access, _ = self.current_tokens(key)
            del self.live_refresh[sent]
            self.live_access.pop(old_access, None)
            grant.generation += 1
            grant.issued_at = self.clock()
            self.refreshes[key] += 1
            access, refresh = self.current_tokens(key)
            self.live_refresh[refresh] = key
            self.live_access[access] = key
        return 200, {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
                     "expires_in": 7200, "scope": "ADMIN"}, {}

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict, dict]:
        """An authorization code exchanged (under self.lock): once, for the client and redirect it was issued to."""
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None:
            self.rejected.append(f"unknown or used authorization code {form.get('code')}")
            return 400, {"error": "invalid_grant", "error_description": "Invalid authorization code"}, {}
        if (form.get("client_id"), form.get("client_secret"), form.get("redirect_uri")) != (
                grant.client_id, grant.client_secret, grant.redirect_uri):
            self.rejected.append(f"bad client or redirect_uri for the code of {grant.key}")
            return 400, {"error": "invalid_grant"}, {}
        self.grants[grant.key] = grant
        access, refresh = self.current_tokens(grant.key)
        self.live_refresh[refresh] = grant.key
        self.live_access[access] = grant.key
        return 200, {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": 7200,
                     "scope": "WRITE"}, {}

    def _client_credentials(self, form: dict[str, str], *, cloud: bool) -> tuple[int, dict, dict]:
        """A service account asks for a token (under self.lock): a fresh one each time, never a refresh token."""
        client_id = form.get("client_id", "")
        self.client_credentials_requests[client_id] += 1
        account = self.service_accounts.get(client_id)
        if account is None or account.cloud != cloud or form.get("client_secret") != account.client_secret:
            self.rejected.append(f"bad client credentials for service account {client_id}")
            if cloud:
                return 401, {"error": "access_denied", "error_description": "Unauthorized"}, {}
            return 401, {"error": "invalid_client"}, {}
        if account.disabled:
            self.rejected.append(f"disabled service account {client_id}")
            return 401, {"error": "invalid_client"}, {}
        requested = form.get("scope", "").split()
        if cloud:
            requested = [scope for scope in requested if scope != "offline_access"] or account.scope.split()
            missing = [scope for scope in requested if scope not in account.scope.split()]
            if missing:
                self.rejected.append(f"service account {client_id} asked for {missing}")
                return 403, {"error": "invalid_scope", "error_description": f"Not granted: {' '.join(missing)}"}, {}
        else:
            allowed = DC_SERVICE_ACCOUNT_SCOPES[:DC_SERVICE_ACCOUNT_SCOPES.index(account.scope) + 1]
            if not requested or any(scope not in allowed for scope in requested):
                self.rejected.append(f"service account {client_id} asked for {requested}")
                return 400, {"error": "invalid_scope"}, {}
        account.issued += 1
        key = _service_key(client_id)
        self.grants[key] = Grant(key, "", client_id, account.client_secret, account.user, account.display_name,
                                 cloud=cloud)
        access = f"SA-{client_id}-{account.issued}"
        self.live_access[access] = key
        self.client_credentials_grants[client_id] += 1
        return 200, {"access_token": access, "token_type": "bearer", "expires_in": account.expires_in,
                     "scope": " ".join(requested)}, {}

    def gateway(self, path: str, headers: dict) -> tuple[int, object, dict]:
        """Atlassian's API gateway for a live Cloud token: accessible-resources and myself on CLOUD_ID."""
        auth = headers.get("Authorization", "")
        with self.lock:
            key = self.live_access.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
            grant = self.grants.get(key) if key else None
            account = self.service_accounts.get(grant.client_id) if grant is not None else None
        if grant is None or not grant.cloud:
            return 401, {"code": 401, "message": "Unauthorized"}, {}
        scopes = account.scope.split() if account is not None else ["read:jira-work", "write:jira-work"]
        resource = path.removeprefix(CLOUD_API_PREFIX)
        if resource == "/oauth/token/accessible-resources":
            return 200, [{"id": CLOUD_ID, "url": CLOUD_SITE_URL, "name": "fake-jira", "scopes": scopes}], {}
        if resource in (f"/ex/jira/{CLOUD_ID}/rest/api/2/myself", f"/ex/jira/{CLOUD_ID}/rest/api/3/myself"):
            return 200, {"accountId": grant.user, "displayName": grant.display_name,
                         "accountType": "app" if account is not None else "atlassian", "active": True}, {}
        if not resource.startswith(f"/ex/jira/{CLOUD_ID}/"):
            return 401, {"code": 401, "message": "Unauthorized"}, {}
        return 404, {"errorMessages": ["Not found"]}, {}

    def revoke(self, form: dict[str, str]) -> tuple[int, dict, dict]:
        """Revoke a live token and its pair (the grant is dead at Jira afterwards)."""
        token = form.get("token", "")
        with self.lock:
            key = self.live_refresh.get(token) or self.live_access.get(token)
            if key is not None:
                access, refresh = self.current_tokens(key)
                self.live_refresh.pop(refresh, None)
                self.live_access.pop(access, None)
            self.revoked.append(token)
        return 200, {}, {}

    def server_info(self) -> dict:
        return {"version": "9.12.2", "versionNumbers": [9, 12, 2], "baseUrl": self.base_url,
                "deploymentType": "Server"}

    def rest(self, path: str, headers: dict) -> tuple[int, dict, dict]:
        auth = headers.get("Authorization", "")
        if path == SERVER_INFO_PATH and not auth:
            return 200, self.server_info(), {}  # Jira says who it is to anyone (the base URL check asks)
        with self.lock:
            key = self.live_access.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
            grant = self.grants.get(key) if key else None
        if grant is None:
            return 401, {"errorMessages": ["You are not authenticated."]}, {}
        cookie = _session_cookie(headers.get("Cookie", ""))
        if cookie is not None and self.sessions.get(cookie) not in (None, grant.user):
            # Real Jira would now act as the cookie's user, not the token's.
            self.identity_mismatches.append(f"token of {grant.user} sent with the session of {self.sessions[cookie]}")
        session_id = secrets.token_hex(8)
        self.sessions[session_id] = grant.user
        cookie_header = {"Set-Cookie": f"JSESSIONID={session_id}; Path={PREFIX}; HttpOnly"}
        if path == MYSELF_PATH:
            return 200, {"name": grant.user, "key": grant.user, "displayName": grant.display_name}, cookie_header
        if path == SERVER_INFO_PATH:
            return 200, self.server_info(), cookie_header
        return 404, {"errorMessages": ["Not found"]}, cookie_header

    def _answer_token_request(self, headers: dict, body: bytes, *, cloud: bool = False) -> Answer:
        host = f"{self.scheme}://{next((v for k, v in headers.items() if k.lower() == 'host'), '')}"
        with self._in_flight_changed:
            self.token_in_flight += 1
            self.max_token_in_flight = max(self.max_token_in_flight, self.token_in_flight)
            self.token_in_flight_per_host[host] += 1
            self.max_token_in_flight_per_host[host] = max(self.max_token_in_flight_per_host[host],
                                                          self.token_in_flight_per_host[host])
            self.token_in_flight_log.append((host, self.token_in_flight_per_host[host], self.token_in_flight))
            self.token_in_flight_by_host_log.append(dict(self.token_in_flight_per_host))
            self._in_flight_changed.notify_all()
            if self._hold_until is not None:
                self._in_flight_changed.wait_for(
                    lambda: self._hold_until is None or self.token_in_flight >= self._hold_until,
                    timeout=self._hold_timeout)
                self._hold_until = None  # held once, overlap or not: from now on every request is answered at once
                self._in_flight_changed.notify_all()
        try:
            content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
            if cloud:
                if not content_type.startswith("application/json"):
                    self.rejected.append(f"Cloud token request that is not JSON ({content_type!r})")
                    return _json_answer(415, {"error": "invalid_request"}, {})
                payload = json.loads(body or b"{}")
                return _json_answer(*self.token({k: str(v) for k, v in payload.items()}, cloud=True))
            if not content_type.startswith("application/x-www-form-urlencoded"):
                self.rejected.append(f"token request that is not form-encoded ({content_type!r})")
                return Answer(500, b"<html><body>HTTP Status 500</body></html>", {"Content-Type": "text/html"})
            return _json_answer(*self.token(Call("POST", TOKEN_PATH, headers, body).form))
        finally:
            with self._in_flight_changed:
                self.token_in_flight -= 1
                self.token_in_flight_per_host[host] -= 1

    # --- the HTTP server ---

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                self._answer()

            def do_POST(self):  # noqa: N802
                self._answer()

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                headers = dict(self.headers)
                fake.calls.append(Call(self.command, self.path, headers, body))
                queue = fake.answers.get(path)
                if path == SERVER_INFO_PATH and self.command == "GET" and "Authorization" not in headers:
                    # The base URL check before consent (anonymous): Jira's public answer, never a queued one,
                    # which belongs to the Bearer call a test scripted it for.
                    fake.base_url_checks.append(f"{self.command} {path}")
                    answer = _json_answer(200, fake.server_info(), {})
                elif queue:
                    answer = queue.popleft()
                elif fake.outage is not None and path in (TOKEN_PATH, CLOUD_TOKEN_PATH):
                    answer = fake.outage
                elif path in (TOKEN_PATH, CLOUD_TOKEN_PATH) and self.command == "POST":
                    fake.unscripted.append(f"{self.command} {path}")
                    fake.token_requests_started.release()
                    answer = fake._answer_token_request(headers, body, cloud=path == CLOUD_TOKEN_PATH)
                elif path == REVOKE_PATH and self.command == "POST":
                    answer = _json_answer(*fake.revoke(Call("POST", path, headers, body).form))
                elif path.startswith(f"{CLOUD_API_PREFIX}/") and self.command == "GET":
                    fake.unscripted.append(f"{self.command} {path}")
                    answer = _json_answer(*fake.gateway(path, headers))
                elif path.startswith(f"{PREFIX}/rest/api/") and self.command == "GET":
                    fake.unscripted.append(f"{self.command} {path}")
                    answer = _json_answer(*fake.rest(path, headers))
                else:
                    fake.unexpected.append(f"{self.command} {path}")
                    answer = Answer(599, b"unexpected call")
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args):
                pass

        return Handler

    def stop(self):
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _service_key(client_id: str) -> str:
    """The grant key a service account's tokens map to (so /myself answers as it)."""
    return f"service-account:{client_id}"


def _json_answer(status: int, payload, headers: dict) -> Answer:
    return Answer(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


def _session_cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "JSESSIONID":
            return value
    return None
