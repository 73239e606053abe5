"""The sandbox plays two Jira users, and its issues record which of them created each one.

User-based sync needs a Jira where each person authorizes the same incoming
link as themselves and what they create shows up under their name. Each test
talks to a real sandbox server over HTTP (see conftest.py).
"""

import base64
import hashlib
import itertools
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.sandbox.conftest import form_inputs

CALLBACK = "http://127.0.0.1:8000/oauth/jira/callback/users"
ADMIN_DISPLAY_NAME = "Jira Sandbox Admin"
USER2_DISPLAY_NAME = "Jira Sandbox User Two"
_project_keys = (f"USR{n}" for n in itertools.count(1))


def pkce_pair():
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def credentials_of(sandbox, who):
    if who == "admin":
        return sandbox.admin_username, sandbox.admin_password
    return sandbox.user2_username, sandbox.user2_password


def code_from(answer, state):
    assert answer.status_code == 302, answer.text[:500]
    params = {key: values[0] for key, values in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    assert params["state"] == state, params
    return params["code"]


def redeem(sandbox, link, code, verifier):
    client_id, client_secret = link
    response = requests.post(
        f"{sandbox.url}/rest/oauth2/latest/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": client_id,
            "client_secret": client_secret,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def token_for(sandbox, link, who, scope):
    """Authorize `link` as the sandbox user `who` ("admin" or "user2") and return its access token."""
    username, password = credentials_of(sandbox, who)
    session = sandbox.login(requests.Session(), username, password)
    verifier, challenge = pkce_pair()
    answer = sandbox.authorize(
        session, client_id=link[0], redirect_uri=CALLBACK, scope=scope, state=f"st-{who}", code_challenge=challenge
    )
    return redeem(sandbox, link, code_from(answer, f"st-{who}"), verifier)["access_token"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def new_project(sandbox):
    key = next(_project_keys)
    sandbox.manage("sandbox_create_project", "--key", key, "--name", f"Project {key}")
    return key


def create_issue(sandbox, token, fields):
    return requests.post(f"{sandbox.url}/rest/api/2/issue", json={"fields": fields}, headers=bearer(token), timeout=10)


def task(project_key, summary="Write the release notes"):
    return {"project": {"key": project_key}, "summary": summary, "issuetype": {"name": "Task"},
            "description": "Made by the sandbox tests."}


def search(sandbox, token, **params):
    response = requests.get(f"{sandbox.url}/rest/api/2/search", params=params, headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def tokens(jira_sandbox_server):
    """WRITE tokens of both users on one link (one grant per person), and a READ token of user two."""
    sandbox = jira_sandbox_server
    write_link = sandbox.create_link("User-based sync", CALLBACK, "WRITE")
    read_link = sandbox.create_link("Read only", CALLBACK, "READ")
    return {
        "admin": token_for(sandbox, write_link, "admin", "WRITE"),
        "user2": token_for(sandbox, write_link, "user2", "WRITE"),
        "read": token_for(sandbox, read_link, "user2", "READ"),
    }


class TestTwoJiraUsers:
    def test_login_page_lists_both_users_with_their_passwords(self, jira_sandbox_server):
        page = requests.get(f"{jira_sandbox_server.url}/login/", timeout=10)

        assert page.status_code == 200
        hint = page.text[page.text.index('id="sandbox-users"'):]
        for username, password, display_name in [
            (jira_sandbox_server.admin_username, jira_sandbox_server.admin_password, ADMIN_DISPLAY_NAME),
            (jira_sandbox_server.user2_username, jira_sandbox_server.user2_password, USER2_DISPLAY_NAME),
        ]:
            row = hint[hint.index(f'id="sandbox-user-{username}"'):].split("</tr>")[0]
            assert f"<code>{username}</code>" in row
            assert f"<code>{password}</code>" in row  # the passwords the server was started with
            assert display_name in row

    @pytest.mark.parametrize(
        "who, username, display_name",
        [("admin", "jira-admin", ADMIN_DISPLAY_NAME), ("user2", "jira-user2", USER2_DISPLAY_NAME)],
    )
    def test_each_user_consents_as_themselves_and_myself_names_them(self, jira_sandbox_server, who, username,
                                                                      display_name):
        sandbox = jira_sandbox_server
        link = sandbox.create_link(f"Consent as {who}", CALLBACK, "WRITE")
        session = sandbox.login(requests.Session(), *credentials_of(sandbox, who))
        verifier, challenge = pkce_pair()
        consent = session.get(f"{sandbox.url}/rest/oauth2/latest/authorize", params={
            "client_id": link[0], "redirect_uri": CALLBACK, "response_type": "code", "scope": "WRITE",
            "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256",
        }, allow_redirects=False, timeout=10)
        assert consent.status_code == 200
        assert f'<strong id="current-user">{display_name}</strong>' in consent.text
        assert 'id="logout"' in consent.text

        answer = session.post(consent.url, data={**form_inputs(consent.text), "allow": "Allow"},
                              allow_redirects=False, timeout=10)
        token = redeem(sandbox, link, code_from(answer, "s1"), verifier)
        myself = requests.get(f"{sandbox.url}/rest/api/2/myself", headers=bearer(token["access_token"]), timeout=10)

        assert token["scope"] == "WRITE"
        assert myself.status_code == 200
        me = myself.json()
        assert (me["name"], me["displayName"], me["emailAddress"]) == (
            username, display_name, f"{username}@sandbox.invalid")
        assert me["key"].startswith("JIRAUSER")

    def test_the_two_users_are_two_jira_identities(self, jira_sandbox_server, tokens):
        admin, user2 = (
            requests.get(f"{jira_sandbox_server.url}/rest/api/2/myself", headers=bearer(tokens[who]), timeout=10).json()
            for who in ("admin", "user2")
        )

        assert admin["name"] != user2["name"]
        assert admin["key"] != user2["key"]

    def test_not_you_log_out_switches_the_user_and_returns_to_the_consent_page(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        link = sandbox.create_link("Switch user", CALLBACK, "WRITE")
        session = sandbox.login(requests.Session())  # the administrator, as a shared browser might be
        verifier, challenge = pkce_pair()
        consent = session.get(f"{sandbox.url}/rest/oauth2/latest/authorize", params={
            "client_id": link[0], "redirect_uri": CALLBACK, "response_type": "code", "scope": "WRITE",
            "state": "switch", "code_challenge": challenge, "code_challenge_method": "S256",
        }, allow_redirects=False, timeout=10)
        assert ADMIN_DISPLAY_NAME in consent.text

        logout_href = consent.text.split('id="logout"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        login_page = session.get(f"{sandbox.url}{logout_href}", timeout=10)  # follows the redirect to the login page
        assert urlsplit(login_page.url).path == "/login/"
        logged_in = session.post(login_page.url, data={
            **form_inputs(login_page.text), "username": sandbox.user2_username, "password": sandbox.user2_password,
        }, timeout=10)

        # Back on the same consent page, now as user two, and Allow grants user two's access.
        assert logged_in.url == consent.url
        assert f'<strong id="current-user">{USER2_DISPLAY_NAME}</strong>' in logged_in.text
        answer = session.post(logged_in.url, data={**form_inputs(logged_in.text), "allow": "Allow"},
                              allow_redirects=False, timeout=10)
        token = redeem(sandbox, link, code_from(answer, "switch"), verifier)["access_token"]
        me = requests.get(f"{sandbox.url}/rest/api/2/myself", headers=bearer(token), timeout=10).json()
        assert me["name"] == sandbox.user2_username

    def test_user_two_is_not_a_jira_administrator(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        session = sandbox.login(requests.Session(), sandbox.user2_username, sandbox.user2_password)

        home = session.get(f"{sandbox.url}/", timeout=10)
        links = session.get(f"{sandbox.url}/admin/applinks/incominglink/", allow_redirects=False, timeout=10)

        assert f'<strong id="current-user">{USER2_DISPLAY_NAME}</strong>' in home.text
        assert links.status_code == 302 and links.headers["Location"].startswith("/admin/login/")


class TestIssues:
    def test_each_issue_is_reported_by_the_user_whose_token_created_it(self, jira_sandbox_server, tokens):
        sandbox = jira_sandbox_server
        key = new_project(sandbox)

        by_user2 = create_issue(sandbox, tokens["user2"], task(key, "Reported by user two"))
        by_admin = create_issue(sandbox, tokens["admin"], task(key, "Reported by the admin"))

        assert by_user2.status_code == by_admin.status_code == 201
        assert by_user2.json()["key"] == f"{key}-1" and by_admin.json()["key"] == f"{key}-2"
        for created, username, display_name in [
            (by_user2.json(), "jira-user2", USER2_DISPLAY_NAME),
            (by_admin.json(), "jira-admin", ADMIN_DISPLAY_NAME),
        ]:
            assert created["self"] == f"{sandbox.url}/rest/api/2/issue/{created['id']}"
            # Anyone may read it, by key or by id: the reporter stays who created it.
            for id_or_key in (created["key"], created["id"]):
                issue = requests.get(f"{sandbox.url}/rest/api/2/issue/{id_or_key}", headers=bearer(tokens["read"]),
                                     timeout=10)
                assert issue.status_code == 200
                assert issue.json()["key"] == created["key"]
                reporter = issue.json()["fields"]["reporter"]
                assert (reporter["name"], reporter["displayName"]) == (username, display_name)

    def test_fields_come_back_as_sent(self, jira_sandbox_server, tokens):
        key = new_project(jira_sandbox_server)
        created = create_issue(jira_sandbox_server, tokens["user2"], task(key, "Plan sprint 12")).json()

        fields = requests.get(created["self"], headers=bearer(tokens["user2"]), timeout=10).json()["fields"]

        assert fields["summary"] == "Plan sprint 12"
        assert fields["description"] == "Made by the sandbox tests."
        assert fields["issuetype"]["name"] == "Task"
        assert fields["project"]["key"] == key

    def test_an_unknown_issue_is_jiras_404(self, jira_sandbox_server, tokens):
        for id_or_key in ("NOPE-1", "99999999"):
            response = requests.get(f"{jira_sandbox_server.url}/rest/api/2/issue/{id_or_key}",
                                    headers=bearer(tokens["read"]), timeout=10)

            assert response.status_code == 404
            assert response.json() == {"errorMessages": ["Issue Does Not Exist"], "errors": {}}

    def test_a_read_token_cannot_create_an_issue(self, jira_sandbox_server, tokens):
        key = new_project(jira_sandbox_server)

        refused = create_issue(jira_sandbox_server, tokens["read"], task(key))

        assert refused.status_code == 403
        assert refused.json()["errorMessages"]
        assert search(jira_sandbox_server, tokens["read"], jql=f"project = {key}")["total"] == 0

    @pytest.mark.parametrize("token", [None, "not-a-token"])
    def test_creating_without_a_live_token_is_401_json(self, jira_sandbox_server, token):
        headers = bearer(token) if token else {}
        response = requests.post(f"{jira_sandbox_server.url}/rest/api/2/issue", json={"fields": task("DEMO")},
                                 headers=headers, timeout=10)

        assert response.status_code == 401
        assert response.json()["errorMessages"]

    @pytest.mark.parametrize("change, errors", [
        ({"summary": None}, {"summary": "You must specify a summary of the issue."}),
        ({"summary": "   "}, {"summary": "You must specify a summary of the issue."}),
        ({"summary": "x" * 256}, {"summary": "Summary must be less than 255 characters."}),
        ({"project": None}, {"project": "project is required"}),
        ({"project": {"key": "NOPE"}}, {"project": "valid project is required"}),
        ({"issuetype": {"name": "Spaceship"}}, {"issuetype": "valid issue type is required"}),
        ({"issuetype": None, "summary": None}, {"issuetype": "issue type is required",
                                                "summary": "You must specify a summary of the issue."}),
        # The reporter is whoever authorized the token; it cannot be chosen.
        ({"reporter": {"name": "jira-admin"}},
         {"reporter": "Field 'reporter' cannot be set. It is not on the appropriate screen, or unknown."}),
    ])
    def test_validation_errors_have_jiras_shape(self, jira_sandbox_server, tokens, change, errors):
        key = new_project(jira_sandbox_server)
        fields = {name: value for name, value in {**task(key), **change}.items() if value is not None}

        response = create_issue(jira_sandbox_server, tokens["user2"], fields)

        assert response.status_code == 400
        assert response.json() == {"errorMessages": [], "errors": errors}
        assert search(jira_sandbox_server, tokens["user2"], jql=f"project = {key}")["total"] == 0


class TestSearch:
    def test_pages_through_one_projects_issues(self, jira_sandbox_server, tokens):
        sandbox = jira_sandbox_server
        key, other = new_project(sandbox), new_project(sandbox)
        for n in range(1, 6):
            assert create_issue(sandbox, tokens["user2"], task(key, f"Issue {n}")).status_code == 201
        assert create_issue(sandbox, tokens["admin"], task(other, "Elsewhere")).status_code == 201

        pages = [search(sandbox, tokens["read"], jql=f"project = {key} ORDER BY key", startAt=start, maxResults=2)
                 for start in (0, 2, 4, 6)]

        assert [(page["startAt"], page["maxResults"], page["total"]) for page in pages] == [
            (0, 2, 5), (2, 2, 5), (4, 2, 5), (6, 2, 5)]
        assert [[issue["key"] for issue in page["issues"]] for page in pages] == [
            [f"{key}-1", f"{key}-2"], [f"{key}-3", f"{key}-4"], [f"{key}-5"], []]
        assert pages[0]["issues"][0]["fields"]["reporter"]["name"] == "jira-user2"

    def test_an_unknown_project_in_the_jql_is_refused(self, jira_sandbox_server, tokens):
        response = requests.get(f"{jira_sandbox_server.url}/rest/api/2/search", params={"jql": "project = NOPE"},
                                headers=bearer(tokens["read"]), timeout=10)

        assert response.status_code == 400
        assert response.json()["errorMessages"] == ["The value 'NOPE' does not exist for the field 'project'."]

    def test_a_fresh_sandbox_has_project_demo_and_caps_the_page_size(self, jira_sandbox_factory):
        sandbox = jira_sandbox_factory(env={"SANDBOX_SEARCH_MAX_RESULTS": "3"})
        link = sandbox.create_link("Fresh", CALLBACK, "WRITE")
        token = token_for(sandbox, link, "user2", "WRITE")

        first = create_issue(sandbox, token, task("DEMO"))
        for n in range(4):
            create_issue(sandbox, token, task("DEMO", f"More {n}"))
        page = search(sandbox, token, jql="project = DEMO", maxResults=100)

        assert first.status_code == 201
        assert first.json() == {"id": "10001", "key": "DEMO-1", "self": f"{sandbox.url}/rest/api/2/issue/10001"}
        # The server's cap wins over the client's maxResults, and the answer says so.
        assert (page["startAt"], page["maxResults"], page["total"], len(page["issues"])) == (0, 3, 5, 3)
