"""Shared fixtures: admin users, ALM accounts, and Jira's answers (mocked with `responses`)."""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import responses
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.management import base as management_base
from django.core.management import load_command_class
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from responses.registries import FirstMatchRegistry
from urllib3.exceptions import ProtocolError

from alm_accounts import rate_limits
from alm_accounts.models import ALMAccount

JIRA = "https://jira.example.com/jira"
TOKEN_URL = f"{JIRA}/rest/oauth2/latest/token"
MYSELF_URL = f"{JIRA}/rest/api/2/myself"
SERVER_INFO_URL = f"{JIRA}/rest/api/2/serverInfo"
REVOKE_URL = f"{JIRA}/rest/oauth2/latest/revoke"

# Distinctive values so a leak test can search every output for them.
CLIENT_SECRET = "CLIENTSECRET-7f3a9c1e5b"
ACCESS_TOKEN = "ACCESSTOKEN-1-e1d2c3b4"
REFRESH_TOKEN = "REFRESHTOKEN-1-a9b8c7d6"


# Jira DC says who it is to anyone: the admin's Get Auth Token checks the base URL with it (services.site_check)
# before sending anyone to consent. Every Jira of the tests is on an example domain.
ANY_TEST_JIRA_SERVER_INFO = re.compile(
    r"^https?://([a-z0-9-]+\.)*example\.(com|org|net)(:\d+)?(/[^?#]*)?/rest/api/2/serverInfo$")


def server_info_answer(base_url: str = JIRA) -> dict:
    return {"baseUrl": base_url, "version": "9.12.2", "versionNumbers": [9, 12, 2], "deploymentType": "Server",
            "serverTitle": "Jira"}


def _anonymous(request):
    return "Authorization" not in request.headers, "the request carries an Authorization header"


class _WithFallbacks(FirstMatchRegistry):
    """responses' usual registry, then answers used only when no registered one matches (and never used up)."""

    def __init__(self) -> None:
        super().__init__()
        self.fallbacks: list[responses.BaseResponse] = []

    def find(self, request):
        found, reasons = super().find(request)
        if found is None:
            found = next((answer for answer in self.fallbacks if answer.matches(request)[0]), None)
        return found, reasons


def answer_server_info_anonymously(rsps) -> None:
    """Jira's anonymous serverInfo on every test Jira, unless the test registered its own answer."""
    rsps.get_registry().fallbacks.append(
        responses.Response(responses.GET, ANY_TEST_JIRA_SERVER_INFO, json=server_info_answer(), match=[_anonymous]))


def is_base_url_check(call) -> bool:
    return bool(ANY_TEST_JIRA_SERVER_INFO.match(call.request.url)) and "Authorization" not in call.request.headers


class _FilteredCalls(responses.CallList):
    """The calls a test looks at; `reset()` forgets every recorded call, as on `responses`' own list."""

    def __init__(self, recorded: responses.CallList):
        super().__init__()
        self._recorded = recorded

    def reset(self) -> None:
        super().reset()
        self._recorded.reset()


class JiraMock(responses.RequestsMock):
    """`responses` with Jira's anonymous serverInfo answered. `calls` are the calls of the flow under test (the
    OAuth and REST calls); the base URL checks made before consent, which carry no credential, are in
    `base_url_checks`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._must_not_be_asked: list[responses.BaseResponse] = []

    @property
    def calls(self) -> responses.CallList:
        kept = _FilteredCalls(self._calls)
        for call in self._calls:
            if not is_base_url_check(call):
                kept.add(call.request, call.response)
        return kept

    @property
    def base_url_checks(self) -> list:
        return [call for call in self._calls if is_base_url_check(call)]

    def must_not_be_asked(self, answer: responses.BaseResponse) -> responses.BaseResponse:
        """`answer` (as returned by `add`/`get`/`post`...) stands for a request that must NOT be made: it is there so
        that a wrong request would "work" and go on (a retry that would succeed, a new host that would answer). The
        test fails if it is asked for; unused, it is not counted as an unused answer."""
        self._must_not_be_asked.append(answer)
        return answer

    def check_the_answers_that_must_not_be_asked(self) -> None:
        registered = self.get_registry().registered
        for answer in self._must_not_be_asked:
            assert answer.call_count == 0, (
                f"{answer.method} {answer.url} must not be asked for; it was asked {answer.call_count} time(s)")
            registered[:] = [kept for kept in registered if kept is not answer]


def stubs_may_go_unused_reason(request) -> str | None:
    """The reason a test gives for answers it registers in case (None: the test is strict). The marker without a
    reason is refused: whoever relaxes a test says why."""
    marker = request.node.get_closest_marker("stubs_may_go_unused")
    if marker is None:
        return None
    reason = str(marker.kwargs.get("reason") or "").strip()
    if not reason:
        pytest.fail("@pytest.mark.stubs_may_go_unused needs a reason: say why the test's answers may go unused, "
                    "e.g. @pytest.mark.stubs_may_go_unused(reason=\"...\"). An answer for a request that must not "
                    "be made is registered with mocked_jira.must_not_be_asked(...) instead.", pytrace=False)
    return reason


@pytest.fixture
def mocked_jira(request):
    """Jira's answers mocked with `responses`. Every answer a test registers must be asked for: an unused one fails
    the test (a stub the code never reached proves nothing). An answer for a request that must NOT be made is
    registered with `mocked_jira.must_not_be_asked(...)`: the test fails if it is asked for. A test whose answers
    are genuinely there in case says why with `@pytest.mark.stubs_may_go_unused(reason="...")` (the anonymous
    serverInfo fallback is never counted)."""
    strict = stubs_may_go_unused_reason(request) is None
    with JiraMock(assert_all_requests_are_fired=strict, registry=_WithFallbacks) as rsps:
        answer_server_info_anonymously(rsps)
        yield rsps
        rsps.check_the_answers_that_must_not_be_asked()


@pytest.fixture(autouse=True)
def test_jiras_say_who_they_are(request):
    """Get Auth Token outside `mocked_jira` (or in a fixture set up before it): the example Jiras answer the base
    URL check; every other request goes where it always went (real local servers, or nowhere). Inside
    `mocked_jira` its own mock answers."""
    path = str(request.node.fspath).replace(os.sep, "/")
    if "/tests/e2e/" in path or "/tests/sandbox/" in path:
        yield
        return
    with responses.RequestsMock(assert_all_requests_are_fired=False, registry=_WithFallbacks) as rsps:
        rsps.add_passthru(re.compile(".*"))
        answer_server_info_anonymously(rsps)
        yield


def token_answer(n: int = 2, *, expires_in: int = 7200, scope: str = "ADMIN") -> dict:
    return {
        "access_token": f"ACCESSTOKEN-{n}-e1d2c3b4",
        "token_type": "bearer",
        "expires_in": expires_in,
        "refresh_token": f"REFRESHTOKEN-{n}-a9b8c7d6",
        "created_at": 1607635748,
        "scope": scope,
    }


def form_of(call) -> dict[str, str]:
    """The form-encoded body of a recorded request, as a dict of single values."""
    body = call.request.body
    if isinstance(body, bytes):
        body = body.decode()
    return {k: v[0] for k, v in parse_qs(body or "", keep_blank_values=True).items()}


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("jira-admin-user", "admin@example.com", "pw-admin-123")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def add_form_data(callback_id: str, **overrides) -> dict:
    """What the admin's add form posts for a new account, with the callback id the form showed."""
    return {
        "alm_type": "jira",
        "name": "Jira - Payments",
        "authentication": "jira_server_oauth2",
        "base_url": JIRA,
        "callback_url": callback_id,
        "client_id": "client-id-456",
        "client_secret": "new-secret-abc",
        "scope": "ADMIN",
        **overrides,
    }


def change_form_data(account: ALMAccount, **overrides) -> dict:
    """What the admin's change form posts for `account` as it is (Client Secret left blank)."""
    return {
        "alm_type": account.alm_type,
        "name": account.name,
        "authentication": account.authentication,
        "base_url": account.base_url,
        "callback_url": account.callback_id,
        "client_id": account.client_id,
        "client_secret": "",
        "scope": account.scope,
        **overrides,
    }


def staff_user(username: str, *perms: str) -> User:
    """A staff person with these permissions (codenames) only (tests/factories.py UserFactory)."""
    from tests.factories import UserFactory

    return UserFactory(username=username, permissions=perms)


@pytest.fixture
def alice(db) -> User:
    """A staff person without any ALM permission, with an address for the mail about her own grants."""
    from tests.factories import UserFactory

    return UserFactory(username="alice", email="alice@bank.example")


@pytest.fixture
def bob(db) -> User:
    """Another staff person without any ALM permission."""
    from tests.factories import UserFactory

    return UserFactory(username="bob")


# --- The admin's pages, as a test reads them ---


def change_url(account: ALMAccount) -> str:
    """The admin's change page of an ALM account."""
    return reverse("admin:alm_accounts_almaccount_change", args=[account.pk])


def button_url(name: str, account: ALMAccount) -> str:
    """Where one of an account page's buttons posts ("test_connection", "refresh_token", "disconnect"...)."""
    return reverse(f"admin:alm_accounts_almaccount_{name}", args=[account.pk])


def page_text(response) -> str:
    """A page's HTML with its entities decoded, as the words a person reads."""
    return html.unescape(response.content.decode())


def messages_of(response) -> list[tuple[str, str]]:
    """(level, text) of the messages this request added (not older ones still waiting in the cookie)."""
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)._queued_messages]


def message_texts(response) -> list[str]:
    """The texts of the messages this request added."""
    return [text for _level, text in messages_of(response)]


def texts(response) -> str:
    """The messages this request added, one a line."""
    return "\n".join(message_texts(response))


def land(client, response) -> str:
    """Follow the callback's redirect to the account page; return its HTML (where the messages show)."""
    assert response.status_code == 302
    location = response["Location"]
    assert "code=" not in location and "state=" not in location
    followed = client.get(location)
    assert followed.status_code == 200
    return html.unescape(followed.content.decode())


def broken_connection() -> requests.ConnectionError:
    """The connection was made, the request sent, and the connection dropped before the answer."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


@pytest.fixture
def account(db):
    """An ALM account with credentials, not connected yet."""
    return ALMAccount.objects.create(
        name="Jira - Core Banking", base_url=JIRA, client_id="client-id-123", client_secret=CLIENT_SECRET
    )


@pytest.fixture
def connected_account(account):
    """The same account, connected, with an access token expiring in 5 minutes."""
    now = timezone.now()
    account.access_token = ACCESS_TOKEN
    account.refresh_token = REFRESH_TOKEN
    account.token_expires_at = now + timedelta(minutes=5)
    account.token_scope = "ADMIN"
    account.status = ALMAccount.Status.CONNECTED
    account.connected_at = now - timedelta(days=1)
    account.connected_as_name = "jadmin"
    account.connected_as_display_name = "Jira Admin"
    account.save()
    return account


@pytest.fixture
def fake_jira():
    """Jira DC on a real local socket (tests/doubles/fake_jira.py): rotating grants, identities, scripted answers."""
    from tests.doubles.fake_jira import FakeJira

    with FakeJira() as fake:
        yield fake


@dataclass
class Run:
    """What a management command run left: exit code and output."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]

    @property
    def summary(self) -> str:
        (line,) = [line for line in self.out.splitlines() if line.startswith("Summary: ")]
        return line

    def line_of(self, name: str) -> str:
        (line,) = [line for line in self.lines if line.startswith(f"{name}: ")]
        return line


class _KeepConnections:
    """Stands in for django.db.connections in management.base: run_from_argv closes every connection when it
    ends, which would end a `db` test's transaction."""

    @staticmethod
    def close_all():
        pass


class CommandRunner:
    """Runs a management command in this process as manage.py does (run_from_argv: real exit codes, the
    "CommandError: ..." line); each run gives a Run."""

    def __init__(self, capfd):
        self._capfd = capfd

    def __call__(self, *args: str, **effects) -> Run:
        """`manage.py refresh_tokens ARGS`. Keyword arguments replace the engine's side effects
        (alm_accounts.refresher.run.Effects: select, deliver_alerts, heartbeat, pause)."""
        from alm_accounts.management.commands.refresh_tokens import Command
        from alm_accounts.refresher.run import Effects

        return self._run(Command(effects=Effects(**effects) if effects else None), "refresh_tokens", args)

    def of(self, name: str, *args: str) -> Run:
        """`manage.py NAME ARGS`, for another command of the project."""
        return self._run(load_command_class("alm_accounts", name), name, args)

    def _run(self, command, name: str, args) -> Run:
        def signal_not_handled(signum, frame):
            raise AssertionError(f"{signal.Signals(signum).name} reached the test: the command did not handle it")

        self._capfd.readouterr()
        code = 0
        # Tests stop a refresher with SIGTERM to this process: never let it end the test run instead.
        previous = signal.signal(signal.SIGTERM, signal_not_handled)
        try:
            command.run_from_argv(["manage.py", name, *args])
        except SystemExit as exc:
            code = exc.code
        finally:
            signal.signal(signal.SIGTERM, previous)
        out, err = self._capfd.readouterr()
        return Run(code, out, err)


@pytest.fixture
def run_command(capfd, monkeypatch) -> CommandRunner:
    """Run `manage.py refresh_tokens ARGS` (or run_command.of("jira_call", ARGS)) in this process; a Run.

    The database connections stay open after the command (unlike manage.py), so that a `db` test's transaction
    goes on. With the `db` fixture, give `--concurrency 1`: threads have their own connections, which cannot see
    rows of the test's open transaction on PostgreSQL.
    """
    monkeypatch.setattr(management_base, "connections", _KeepConnections)
    return CommandRunner(capfd)


@pytest.fixture
def postgresql_only():
    """For tests of PostgreSQL's promises (row locks, SKIP LOCKED, backends): they skip locally without it, and
    fail with CI=true, where they must run."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"These tests need PostgreSQL, but the database is {connection.vendor}. With CI=true they must run: "
            "set DATABASE_URL=postgres://... (see scripts/start_postgres.sh), or deselect them with "
            "-m 'not postgres' in a run that is not meant to use PostgreSQL.",
            pytrace=False,
        )
    pytest.skip("needs PostgreSQL: DATABASE_URL=postgres://kendis:kendis@127.0.0.1:5432/kendis")


def assert_holds_jiras_current_pair(grant, fake) -> None:
    """A factory-made grant (tests/factories.py) holds the pair the fake Jira accepts now, and is connected."""
    from tests.factories import grant_key

    grant.refresh_from_db()
    assert (grant.access_token, grant.refresh_token) == fake.current_tokens(grant_key(grant)), grant_key(grant)
    assert grant.status == ALMAccount.Status.CONNECTED


def assert_every_grant_alive(fake, keys: dict[int, str]) -> None:
    """Each account made by factories.create_accounts holds the pair Jira currently accepts (refreshed or
    untouched), and is still connected."""
    assert fake.rejected == [], fake.rejected
    stored = {pk: (access, refresh, status) for pk, access, refresh, status in ALMAccount.objects.values_list(
        "pk", "access_token", "refresh_token", "status")}
    lost = {pk: (keys[pk], refresh, fake.current_tokens(keys[pk])[1], status)
            for pk, (access, refresh, status) in stored.items()
            if (access, refresh) != fake.current_tokens(keys[pk]) or status != ALMAccount.Status.CONNECTED}
    assert lost == {}, f"account: (grant, stored refresh token, Jira's live one, status): {lost}"


@pytest.fixture
def shared_database(transactional_db, tmp_path):
    """The environment of a `manage.py` process that sees this test's database.

    PostgreSQL: the test database itself. SQLite: the in-memory test database
    is copied (SQLite's backup) to a file, and this test's connection uses
    that file until the test ends, so the test and the process share it.
    """
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kendis_integration.settings_test"}
    db = connection.settings_dict
    if connection.vendor != "sqlite":
        auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
        env["DATABASE_URL"] = (f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                               f"{quote(db['NAME'], safe='')}")
        yield env
        return
    path = tmp_path / "shared.sqlite3"
    connection.ensure_connection()
    in_memory, name = connection.connection, db["NAME"]
    copy = sqlite3.connect(path)
    in_memory.backup(copy)
    copy.close()
    connection.connection, db["NAME"] = None, str(path)  # the next query connects to the file
    env["DATABASE_URL"] = f"sqlite:///{path}"
    try:
        yield env
    finally:
        connection.close()
        connection.connection, db["NAME"] = in_memory, name


@pytest.fixture
def slow_jira():
    """Jira taking 2 s to answer each token request: refreshes are in flight long enough to be signalled."""
    from tests.doubles.fake_jira import FakeJira

    with FakeJira(latency=2.0) as fake:
        yield fake


def in_thread(target, *args):
    """Run target in a thread with its own database connection, closed at the end; (thread, outcome dict)."""
    outcome = {}

    def run():
        try:
            outcome["result"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    """The environment of a production process in a subprocess: only the required variables, DEBUG unset (off),
    a PostgreSQL that nothing listens on (tests that need a database put their own DATABASE_URL in)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "kendis_integration.settings",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "kendis.example.com",
        "PUBLIC_BASE_URL": "https://kendis.example.com",
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        # PostgreSQL, as in production (SQLite with DEBUG off is warned: alm_accounts.W002); nothing here connects.
        "DATABASE_URL": "postgres://kendis:kendis@127.0.0.1:1/kendis",
        "STATIC_ROOT": str(tmp_path / "staticfiles"),
    }


ROOT = Path(__file__).resolve().parent.parent  # the repository: where manage.py is


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in a subprocess of the repository with exactly `env` (e.g. production_env)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def production_settings(env: dict[str, str], expression: str):
    """Evaluate `expression` (JSON-serialisable) with the production settings loaded."""
    code = ("import json, django; django.setup(); from django.conf import settings; "
            "from alm_accounts.models import callback_url_for; "
            f"print(json.dumps({expression}))")
    result = run(env, "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- Jira Cloud (issue 14): Atlassian's authorization server and API gateway are two distinct stand-in hosts ---

ATLASSIAN_AUTH = "https://auth.example-atlassian.test"
ATLASSIAN_API = "https://api.example-atlassian.test"
CLOUD_TOKEN_URL = f"{ATLASSIAN_AUTH}/oauth/token"
ACCESSIBLE_RESOURCES_URL = f"{ATLASSIAN_API}/oauth/token/accessible-resources"
CLOUD_SITE = "https://kendis-demo.atlassian.net"
CLOUD_ID = "5d3c8a6e-1f2b-4c7d-9e8a-0b1c2d3e4f51"
CLOUD_BASE = f"{ATLASSIAN_API}/ex/jira/{CLOUD_ID}"
CLOUD_MYSELF_URL = f"{CLOUD_BASE}/rest/api/3/myself"
CLOUD_SERVER_INFO_URL = f"{CLOUD_BASE}/rest/api/3/serverInfo"
OTHER_SITE = {"id": "a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62", "url": "https://kendis-other.atlassian.net",
              "name": "kendis-other", "scopes": ["read:jira-work"]}
OUR_SITE = {"id": CLOUD_ID, "url": CLOUD_SITE, "name": "kendis-demo", "scopes": ["read:jira-work"]}
# The deployment's Atlassian app (settings); distinctive so leak checks can search for them.
ATLASSIAN_CLIENT_ID = "deployment-cloud-client-id"
ATLASSIAN_SECRET = "ATLASSIANSECRET-deploy-3c9e1f"
ATLASSIAN_ME = {"accountId": "5b10a2844c20165700ede21g", "displayName": "Jira Admin", "emailAddress": "a@example.com"}
# Who the people of the person-grant tests are in Jira: Data Center names users, Jira Cloud gives an account ID.
ALICE = {"dc": {"name": "jalice", "key": "JIRAUSER10100", "displayName": "Alice Jones"},
         "cloud": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Alice Jones"}}
BOB = {"dc": {"name": "jbob", "key": "JIRAUSER10200", "displayName": "Bob Smith"},
       "cloud": {"accountId": "5b10ac8d82e05b22cc7d4ef6", "displayName": "Bob Smith"}}
ACCOUNTS_OWN = {"dc": {"name": "jadmin", "displayName": "Jira Admin"}, "cloud": ATLASSIAN_ME}  # connected_account's


CLOUD_CALLBACK_PATH = "/oauth/atlassian/callback/"  # this deployment's one Jira Cloud callback


def json_of(call) -> dict:
    """The JSON body of a recorded request."""
    return json.loads(call.request.body)


def cloud_form_data(account: ALMAccount, **overrides) -> dict:
    """The change form of a Cloud account as it is (its scopes ticked, Client Secret blank)."""
    ticked = [s for s in account.cloud_scopes.split() if s != "offline_access"]
    return change_form_data(account, **{"cloud_scopes": ticked, **overrides})


def start_cloud_consent(client, account: ALMAccount, **overrides) -> dict[str, str]:
    """Click Get Auth Token on a Cloud account's page; the query of Atlassian's authorize URL we were sent to."""
    url = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    response = client.post(url, cloud_form_data(account, _get_auth_token="Get Auth Token", **overrides))
    assert response.status_code == 302, response.content[:3000]
    assert response["Location"].startswith(f"{ATLASSIAN_AUTH}/authorize?"), response["Location"]
    return query_of(response["Location"])


@pytest.fixture
def atlassian(settings):
    """The deployment's Atlassian app configured, its two hosts pointed at stand-ins."""
    settings.ATLASSIAN_AUTH_URL = ATLASSIAN_AUTH
    settings.ATLASSIAN_API_URL = ATLASSIAN_API
    settings.ATLASSIAN_CLIENT_ID = ATLASSIAN_CLIENT_ID
    settings.ATLASSIAN_CLIENT_SECRET = ATLASSIAN_SECRET
    return settings


@pytest.fixture
def cloud_account(atlassian, db):
    """A Jira Cloud account using the deployment's app (no Client ID of its own), not connected yet."""
    return ALMAccount.objects.create(name="Jira Cloud - Demo", base_url=CLOUD_SITE,
                                     authentication=ALMAccount.Authentication.JIRA_CLOUD_OAUTH2)


@pytest.fixture
def connected_cloud_account(cloud_account):
    """The same account, connected to its site a day ago, the access token expiring in 5 minutes."""
    now = timezone.now()
    for field, value in dict(
        access_token=ACCESS_TOKEN, refresh_token=REFRESH_TOKEN, token_expires_at=now + timedelta(minutes=5),
        token_scope="read:jira-work offline_access", status=ALMAccount.Status.CONNECTED,
        connected_at=now - timedelta(days=1), connected_as_name=ATLASSIAN_ME["accountId"],
        connected_as_display_name="Jira Admin", cloud_id=CLOUD_ID, cloud_site_name="kendis-demo",
    ).items():
        setattr(cloud_account, field, value)
    cloud_account.save()
    return cloud_account


# --- One rule, each provider: the `provider` fixture (in the spirit of allauth's OAuth2TestsMixin) ---


@dataclass(frozen=True)
class Provider:
    """What a test of a rule common to Data Center and Cloud needs to know of one provider: where its token
    endpoint and /myself are, how its answers look, and the few numbers of its policy the rule depends on."""

    name: str  # "dc" or "cloud"
    token_url: str
    myself_url: str
    identity_field: str  # what /myself names the Jira user by: Data Center's user name, Cloud's account ID
    me: dict  # /myself of the account's own connection (connected_account / connected_cloud_account)
    connected_fixture: str  # the conftest fixture of a connected account of this provider
    lost_answer_retries: int  # a refresh answer lost on the way is asked again this often (Cloud's reuse leeway)
    unwarned_age_days: int  # a grant connected this many days ago gets no "consent ends soon" (DC's never end)

    def refreshes(self, mocked, n: int = 2) -> responses.BaseResponse:
        """The token endpoint answers a refresh with pair n, as this provider does (the answer is returned)."""
        if self.name == "cloud":
            return mocked.post(self.token_url, json=token_answer(n, expires_in=3600,
                                                                 scope="read:jira-work offline_access"))
        return mocked.post(self.token_url, json=token_answer(n))

    def token_requests(self, mocked) -> list[dict[str, str]]:
        """The bodies of the requests to the token endpoint (Data Center: a form, Cloud: JSON)."""
        decode = json_of if self.name == "cloud" else form_of
        return [decode(call) for call in mocked.calls if call.request.url == self.token_url]


PROVIDERS = {
    "dc": Provider("dc", token_url=TOKEN_URL, myself_url=MYSELF_URL, identity_field="name",
                   me={"name": "jadmin", "displayName": "Jira Admin"}, connected_fixture="connected_account",
                   lost_answer_retries=0, unwarned_age_days=400),
    "cloud": Provider("cloud", token_url=CLOUD_TOKEN_URL, myself_url=CLOUD_MYSELF_URL, identity_field="accountId",
                      me=ATLASSIAN_ME, connected_fixture="connected_cloud_account", lost_answer_retries=1,
                      unwarned_age_days=300),
}


@pytest.fixture(params=list(PROVIDERS))
def provider(request) -> Provider:
    """Each provider in turn: a test of a rule both keep runs once for Data Center and once for Cloud."""
    return PROVIDERS[request.param]


@pytest.fixture
def provider_account(provider, request) -> ALMAccount:
    """The provider's account, connected a day ago as its administrator's Jira user, expiring in 5 minutes."""
    return request.getfixturevalue(provider.connected_fixture)


@pytest.fixture
def kind(provider) -> str:
    """"dc" or "cloud": each test that asks runs once per provider (the provider fixture)."""
    return provider.name


@pytest.fixture
def either(provider_account) -> ALMAccount:
    """The provider's account, connected as its administrator's Jira user."""
    return provider_account


@pytest.fixture
def alice_client(alice) -> Client:
    browser = Client()
    browser.force_login(alice)
    return browser


# The messages and My ALM Credentials row a person reads, as text (the person-grant tests).

def page_messages(text: str) -> list[str]:
    block = re.search(r'<ul class="messagelist">(.*?)</ul>', text, re.S)
    if block is None:
        return []
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", m)).split())
            for m in re.findall(r"<li[^>]*>(.*?)</li>", block.group(1), re.S)]


def my_row(text: str, account: ALMAccount) -> str:
    body = re.search(rf'<tr class="alm-my-credential" data-account="{re.escape(account.name)}">(.*?)</tr>', text,
                     re.S).group(1)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture(autouse=True)
def _no_rate_limits_carried_over(monkeypatch):
    """What this process learnt of rate limits (alm_accounts.rate_limits: hosts paced, token endpoints left alone,
    counts not yet written) is process-wide: no test inherits another's. The counts' writing thread stays off
    (its own connection would write outside the test's transaction): the counts are written when /metrics is
    read, at the refresher's end, or by the test (services.rate_limits.write_counts); a test of the thread turns
    it on (COUNTS_WRITER.background)."""
    from alm_accounts.services.rate_limits import COUNTS_WRITER

    monkeypatch.setattr(COUNTS_WRITER, "background", False)
    states = (rate_limits.PACING, rate_limits.TOKEN_ENDPOINTS, rate_limits.COUNTS, COUNTS_WRITER)
    for state in states:
        state.clear()
    yield
    for state in states:
        state.clear()


METRICS_TOKEN = "metrics-token-tests-4d1f"


def metric_samples(client, settings) -> dict:
    """/metrics as the test client's scrape sees it: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.content.decode()) for sample in family.samples}
