"""The Jira sandbox as a real server for tests, driven only through subprocess and HTTP.

The sandbox is its own Django project; loading its settings into the pytest
process (where pytest-django may have configured the main project) is exactly
what must not happen, so everything goes through `jira_sandbox/manage.py`.

Fixture `jira_sandbox_server` (session scope) yields a `JiraSandbox`:

- `.url`: the origin, e.g. "http://127.0.0.1:54321"; use it as the Jira base URL.
- `.admin_username`, `.admin_password`: the sandbox's Jira administrator
  ("jira-admin", display name "Jira Sandbox Admin").
- `.user2_username`, `.user2_password`: a second Jira user without admin rights
  ("jira-user2", display name "Jira Sandbox User Two"), for user-based sync.
- `.create_link(name, redirect_url, permission="ADMIN") -> (client_id, client_secret)`:
  an incoming application link (permission READ, WRITE, ADMIN or SYSTEM_ADMIN).
- `.create_service_account(name, scope="WRITE") -> dict`: a Data Center service account (client_id,
  client_secret, username, display_name, scope); `cloud=True, scopes="read:jira-work ...", sites=[...]` makes an
  Atlassian Cloud one instead (client_id, client_secret, account_id, email, scopes, sites).
  `.disable_service_account(client_id, enable=False)` disables it (or enables it again).
- `.token_requests`: how many POSTs the token endpoint has answered so far,
  whatever the outcome; `.token_grants`: how many of them issued tokens (200).
  Both are read live from `/sandbox/stats`; `.stats()` returns the whole JSON.
  `.stats()["cloud"]` counts the Atlassian Cloud token endpoint the same way, plus
  "reuse_within_leeway" and "families_killed" (see tests/sandbox/test_sandbox_cloud.py
  for the Cloud side: /cloud-auth and /cloud-api, the sites and the app from sandbox_setup).
- `.login(session, username=None, password=None)`: log a `requests.Session` in,
  as the administrator unless another user is given.
- `.authorize(session, client_id=..., redirect_uri=..., scope=..., state=...,
  code_challenge=..., allow=True)`: open the consent page with a logged-in
  session and press Allow (or Deny); returns the unfollowed 302 whose Location
  goes back to the client.
- `.manage(*args) -> str`: run any sandbox management command, return stdout.
- `.database_path`, `.log_path`: where its SQLite file and server log are.

The server is shared by the whole session, so tests should create their own
link rather than rely on a count of links or tokens. For other settings (say a
5 s access token lifetime), fixture `jira_sandbox_factory` starts private ones,
stopped when the test ends:
`sandbox = jira_sandbox_factory(env={"SANDBOX_ACCESS_TOKEN_SECONDS": "5"})`.
"""

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from tests.doubles.servers import free_port, running_server

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY = REPO_ROOT / "jira_sandbox" / "manage.py"
ADMIN_USERNAME = "jira-admin"
ADMIN_PASSWORD = "sandbox-admin-for-tests"
USER2_USERNAME = "jira-user2"
USER2_PASSWORD = "sandbox-user2-for-tests"


class _FormInputs(HTMLParser):
    """Collect the name/value of every <input> of a page (hidden fields, CSRF token)."""

    def __init__(self):
        super().__init__()
        self.values = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.values[attrs["name"]] = attrs.get("value") or ""


def form_inputs(html):
    parser = _FormInputs()
    parser.feed(html)
    return parser.values


@dataclass
class JiraSandbox:
    url: str
    admin_username: str
    admin_password: str
    database_path: Path
    log_path: Path
    env: dict
    user2_username: str = USER2_USERNAME
    user2_password: str = USER2_PASSWORD

    def manage(self, *args):
        result = subprocess.run(
            [sys.executable, str(MANAGE_PY), *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def create_link(self, name, redirect_url, permission="ADMIN"):
        output = self.manage(
            "sandbox_create_link", "--name", name, "--redirect-url", redirect_url, "--permission", permission
        )
        credentials = json.loads(output)
        return credentials["client_id"], credentials["client_secret"]

    def create_service_account(self, name, scope="WRITE", *, cloud=False, scopes=None, sites=()):
        args = ["sandbox_create_service_account", "--name", name]
        if cloud:
            args.append("--cloud")
            if scopes is not None:
                args += ["--scopes", scopes]
            for site in sites:
                args += ["--site", site]
        else:
            args += ["--scope", scope]
        return json.loads(self.manage(*args))

    def disable_service_account(self, client_id, enable=False):
        self.manage("sandbox_disable_service_account", "--client-id", client_id, *(["--enable"] if enable else []))

    def stats(self):
        response = requests.get(f"{self.url}/sandbox/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    @property
    def token_requests(self):
        return self.stats()["token_requests"]

    @property
    def token_grants(self):
        return self.stats()["token_grants"]

    def login(self, session, username=None, password=None):
        page = session.get(f"{self.url}/login/", timeout=10)
        page.raise_for_status()
        response = session.post(
            f"{self.url}/login/",
            data={
                "csrfmiddlewaretoken": form_inputs(page.text)["csrfmiddlewaretoken"],
                "username": username or self.admin_username,
                "password": password or self.admin_password,
            },
            allow_redirects=False,
            timeout=10,
        )
        if response.status_code != 302:
            raise RuntimeError(f"Sandbox login failed with HTTP {response.status_code}")
        return session

    def authorize(self, session, *, client_id, redirect_uri, scope, state, code_challenge, allow=True):
        params = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        authorize_url = f"{self.url}/rest/oauth2/latest/authorize"
        consent = session.get(authorize_url, params=params, allow_redirects=False, timeout=10)
        if consent.status_code != 200:
            return consent  # the request was refused before consent, e.g. invalid_scope
        fields = form_inputs(consent.text)
        if allow:
            fields["allow"] = "Allow"
        return session.post(consent.url, data=fields, allow_redirects=False, timeout=10)


@contextlib.contextmanager
def start_jira_sandbox(directory, env=None):
    """Set up a fresh sandbox database in `directory`, run the server, stop it afterwards."""
    directory = Path(directory)
    server_env = {
        **os.environ,
        "SANDBOX_DATABASE_PATH": str(directory / "sandbox.sqlite3"),
        "SANDBOX_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SANDBOX_USER2_PASSWORD": USER2_PASSWORD,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    # pytest-django exports the main project's settings; the sandbox must not see them.
    server_env.pop("DJANGO_SETTINGS_MODULE", None)
    port = free_port()
    sandbox = JiraSandbox(
        url=f"http://127.0.0.1:{port}",
        admin_username=ADMIN_USERNAME,
        admin_password=ADMIN_PASSWORD,
        database_path=directory / "sandbox.sqlite3",
        log_path=directory / "server.log",
        env=server_env,
    )
    sandbox.manage("sandbox_setup")
    command = [sys.executable, str(MANAGE_PY), "runserver", f"127.0.0.1:{port}", "--noreload"]
    with running_server(command, ready_url=f"{sandbox.url}/login/", log_path=sandbox.log_path, cwd=REPO_ROOT,
                        env=server_env):
        yield sandbox


@pytest.fixture(scope="session")
def jira_sandbox_server(tmp_path_factory):
    """A running Jira sandbox shared by the session; see the module docstring."""
    with start_jira_sandbox(tmp_path_factory.mktemp("jira_sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def jira_sandbox_factory(tmp_path_factory):
    """Start private sandboxes with extra environment (SANDBOX_*), stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(env=None):
            directory = tmp_path_factory.mktemp("jira_sandbox_private")
            return stack.enter_context(start_jira_sandbox(directory, env=env))

        yield start
