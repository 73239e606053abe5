"""The Jira sandbox must behave like Jira DC's OAuth 2.0 provider wherever a client can tell.

Each test talks to a real sandbox server over HTTP (see conftest.py), the way
the integration will talk to Jira.
"""

import base64
import hashlib
import secrets
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

CALLBACK = "http://127.0.0.1:8000/alm-accounts/oauth/callback/1"


def pkce_pair():
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(response):
    assert response.status_code == 302, response.text[:500]
    location = response.headers["Location"]
    return location, {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def token_request(sandbox, **form):
    return requests.post(f"{sandbox.url}/rest/oauth2/latest/token", data=form, timeout=10)


def bearer_get(sandbox, path, access_token):
    return requests.get(f"{sandbox.url}{path}", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def connect(sandbox, *, permission="ADMIN", scope="ADMIN", redirect_uri=CALLBACK):
    """The whole happy path: link, consent, code exchange. Returns (link credentials, token JSON)."""
    client_id, client_secret = sandbox.create_link("Core Banking", redirect_uri, permission)
    session = sandbox.login(requests.Session())
    verifier, challenge = pkce_pair()
    answer = sandbox.authorize(
        session,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state="state-123",
        code_challenge=challenge,
    )
    _, params = query_of(answer)
    assert params["state"] == "state-123"
    response = token_request(
        sandbox,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri=redirect_uri,
        client_id=client_id,
        client_secret=client_secret,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    return (client_id, client_secret), response.json()


def refresh(sandbox, credentials, refresh_token, **extra):
    client_id, client_secret = credentials
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": CALLBACK,
        **extra,
    }
    return token_request(sandbox, **{key: value for key, value in form.items() if value is not None})


class TestAuthorizationCodeFlow:
    def test_code_exchange_returns_a_jira_shaped_token_response(self, jira_sandbox_server):
        before = jira_sandbox_server.token_requests

        _, token = connect(jira_sandbox_server)

        assert token["token_type"].lower() == "bearer"
        assert token["expires_in"] == 7200
        assert token["scope"] == "ADMIN"
        assert token["access_token"] and token["refresh_token"]
        assert abs(token["created_at"] - time.time()) < 60
        assert jira_sandbox_server.token_requests == before + 1

    def test_myself_and_server_info_answer_with_the_bearer_token(self, jira_sandbox_server):
        _, token = connect(jira_sandbox_server)

        myself = bearer_get(jira_sandbox_server, "/rest/api/2/myself", token["access_token"])
        info = bearer_get(jira_sandbox_server, "/rest/api/2/serverInfo", token["access_token"])

        assert myself.status_code == 200
        assert myself.json() | {"key": None, "self": None, "timeZone": None, "locale": None} == {
            "name": "jira-admin",
            "key": None,
            "self": None,
            "displayName": "Jira Sandbox Admin",
            "emailAddress": "jira-admin@sandbox.invalid",
            "active": True,
            "deleted": False,
            "timeZone": None,
            "locale": None,
        }
        assert myself.json()["key"].startswith("JIRAUSER")
        assert info.status_code == 200
        assert info.json() == {
            "baseUrl": jira_sandbox_server.url,
            "version": "9.12.2",
            "versionNumbers": [9, 12, 2],
            "deploymentType": "Server",
            "serverTitle": "Jira Sandbox",
        }

    @pytest.mark.parametrize("token", [None, "not-a-token"])
    def test_rest_api_refuses_a_missing_or_unknown_token_with_401_json(self, jira_sandbox_server, token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = requests.get(f"{jira_sandbox_server.url}/rest/api/2/myself", headers=headers, timeout=10)

        assert response.status_code == 401
        assert response.json()["errorMessages"]

    def test_a_code_can_be_redeemed_only_once(self, jira_sandbox_server):
        client_id, client_secret = jira_sandbox_server.create_link("Once", CALLBACK, "READ")
        session = jira_sandbox_server.login(requests.Session())
        verifier, challenge = pkce_pair()
        answer = jira_sandbox_server.authorize(
            session, client_id=client_id, redirect_uri=CALLBACK, scope="READ", state="s", code_challenge=challenge
        )
        code = query_of(answer)[1]["code"]
        form = dict(
            grant_type="authorization_code",
            code=code,
            redirect_uri=CALLBACK,
            client_id=client_id,
            client_secret=client_secret,
            code_verifier=verifier,
        )

        assert token_request(jira_sandbox_server, **form).status_code == 200
        second = token_request(jira_sandbox_server, **form)

        assert second.json()["error"] == "invalid_grant"

    def test_a_wrong_pkce_verifier_is_invalid_grant(self, jira_sandbox_server):
        client_id, client_secret = jira_sandbox_server.create_link("PKCE", CALLBACK, "READ")
        session = jira_sandbox_server.login(requests.Session())
        _, challenge = pkce_pair()
        answer = jira_sandbox_server.authorize(
            session, client_id=client_id, redirect_uri=CALLBACK, scope="READ", state="s", code_challenge=challenge
        )

        response = token_request(
            jira_sandbox_server,
            grant_type="authorization_code",
            code=query_of(answer)[1]["code"],
            redirect_uri=CALLBACK,
            client_id=client_id,
            client_secret=client_secret,
            code_verifier=pkce_pair()[0],
        )

        assert response.json()["error"] == "invalid_grant"

    def test_a_json_body_makes_the_token_endpoint_fail_with_500(self, jira_sandbox_server):
        response = requests.post(
            f"{jira_sandbox_server.url}/rest/oauth2/latest/token",
            json={"grant_type": "authorization_code", "code": "x"},
            timeout=10,
        )

        assert response.status_code == 500

    def test_a_wrong_client_secret_is_refused(self, jira_sandbox_server):
        (client_id, _), token = connect(jira_sandbox_server)

        response = refresh(jira_sandbox_server, (client_id, "wrong"), token["refresh_token"])

        assert response.json()["error"] == "invalid_client"


class TestRefresh:
    def test_refresh_rotates_both_tokens(self, jira_sandbox_server):
        credentials, first = connect(jira_sandbox_server)

        response = refresh(jira_sandbox_server, credentials, first["refresh_token"])

        assert response.status_code == 200, response.text
        second = response.json()
        assert second["scope"] == "ADMIN"
        assert second["access_token"] != first["access_token"]
        assert second["refresh_token"] != first["refresh_token"]
        assert bearer_get(jira_sandbox_server, "/rest/api/2/myself", second["access_token"]).status_code == 200
        assert bearer_get(jira_sandbox_server, "/rest/api/2/myself", first["access_token"]).status_code == 401
        reuse = refresh(jira_sandbox_server, credentials, first["refresh_token"])
        assert reuse.json()["error"] == "invalid_grant"

    @pytest.mark.parametrize("redirect_uri", [None, CALLBACK + "/"])
    def test_refresh_without_the_registered_redirect_uri_is_invalid_grant(self, jira_sandbox_server, redirect_uri):
        credentials, token = connect(jira_sandbox_server)

        response = refresh(jira_sandbox_server, credentials, token["refresh_token"], redirect_uri=redirect_uri)

        assert response.json()["error"] == "invalid_grant"
        # The refused attempt must not have used the refresh token up.
        assert refresh(jira_sandbox_server, credentials, token["refresh_token"]).status_code == 200

    def test_concurrent_refreshes_of_one_token_leave_a_single_winner(self, jira_sandbox_server):
        credentials, token = connect(jira_sandbox_server)
        start = threading.Barrier(4)
        statuses = []

        def race():
            start.wait()
            statuses.append(refresh(jira_sandbox_server, credentials, token["refresh_token"]).status_code)

        racers = [threading.Thread(target=race) for _ in range(4)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()

        assert sorted(statuses) == [200, 400, 400, 400]

    def test_revoked_access_token_gets_401(self, jira_sandbox_server):
        (client_id, client_secret), token = connect(jira_sandbox_server)

        revoke = requests.post(
            f"{jira_sandbox_server.url}/rest/oauth2/latest/revoke",
            data={
                "token": token["access_token"],
                "token_type_hint": "access_token",
                "client_id": client_id,
                "client_secret": client_secret,
            },
            timeout=10,
        )

        assert revoke.status_code == 200
        assert bearer_get(jira_sandbox_server, "/rest/api/2/myself", token["access_token"]).status_code == 401


class TestAuthorizationRequest:
    def start(self, sandbox, *, permission="READ", registered=CALLBACK, **overrides):
        client_id, _ = sandbox.create_link("Authorize", registered, permission)
        params = {
            "client_id": client_id,
            "redirect_uri": registered,
            "response_type": "code",
            "scope": "READ",
            "state": "st8",
            "code_challenge": pkce_pair()[1],
            "code_challenge_method": "S256",
            **overrides,
        }
        session = sandbox.login(requests.Session())
        url = f"{sandbox.url}/rest/oauth2/latest/authorize"
        return session.get(url, params={k: v for k, v in params.items() if v is not None}, allow_redirects=False)

    def test_consent_requires_a_logged_in_jira_user(self, jira_sandbox_server):
        response = requests.get(
            f"{jira_sandbox_server.url}/rest/oauth2/latest/authorize?client_id=x", allow_redirects=False, timeout=10
        )

        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login/?next=")

    def test_consent_page_shows_allow_and_deny(self, jira_sandbox_server):
        response = self.start(jira_sandbox_server)

        assert response.status_code == 200
        assert 'id="allow"' in response.text and 'id="deny"' in response.text

    def test_deny_sends_access_denied_back_with_the_state(self, jira_sandbox_server):
        client_id, _ = jira_sandbox_server.create_link("Deny", CALLBACK, "READ")
        session = jira_sandbox_server.login(requests.Session())

        answer = jira_sandbox_server.authorize(
            session,
            client_id=client_id,
            redirect_uri=CALLBACK,
            scope="READ",
            state="deny-state",
            code_challenge=pkce_pair()[1],
            allow=False,
        )

        location, params = query_of(answer)
        assert location.startswith(CALLBACK + "?")
        assert params["error"] == "access_denied"
        assert params["state"] == "deny-state"

    @pytest.mark.parametrize("permission, scope", [("READ", "WRITE"), ("ADMIN", "SYSTEM_ADMIN")])
    def test_a_scope_above_the_link_permission_is_invalid_scope(self, jira_sandbox_server, permission, scope):
        response = self.start(jira_sandbox_server, permission=permission, scope=scope)

        location, params = query_of(response)
        assert location.startswith(CALLBACK + "?")
        assert params["error"] == "invalid_scope"
        assert permission in params["error_description"]
        assert params["state"] == "st8"

    @pytest.mark.parametrize("scope", ["READ WRITE", "read:jira-work", None])
    def test_exactly_one_known_scope_name_is_accepted(self, jira_sandbox_server, scope):
        response = self.start(jira_sandbox_server, permission="ADMIN", scope=scope)

        assert query_of(response)[1]["error"] == "invalid_scope"

    def test_a_lower_scope_than_the_permission_is_granted(self, jira_sandbox_server):
        _, token = connect(jira_sandbox_server, permission="ADMIN", scope="READ")

        assert token["scope"] == "READ"

    def test_pkce_is_required(self, jira_sandbox_server):
        response = self.start(jira_sandbox_server, code_challenge=None, code_challenge_method=None)

        assert query_of(response)[1]["error"] == "invalid_request"

    @pytest.mark.parametrize(
        "requested",
        [
            CALLBACK + "/",
            CALLBACK.replace("127.0.0.1:8000", "127.0.0.1:9000"),  # DOT alone would accept another loopback port
            CALLBACK.replace("http:", "https:"),
        ],
    )
    def test_the_redirect_url_must_match_exactly_or_jira_shows_its_own_error(self, jira_sandbox_server, requested):
        response = self.start(jira_sandbox_server, redirect_uri=requested)

        assert response.status_code == 400
        assert "Location" not in response.headers


class TestAdmin:
    def test_create_link_in_the_admin_and_use_its_credentials(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        session = sandbox.login(requests.Session())
        changelist = session.get(f"{sandbox.url}/admin/applinks/incominglink/", timeout=10)
        assert "Application links" in changelist.text and "Create link" in changelist.text
        add_form = session.get(f"{sandbox.url}/admin/applinks/incominglink/add/", timeout=10)
        for label in ("Name", "Redirect URL", "Permission"):
            assert f">{label}:</label>" in add_form.text

        created = session.post(
            add_form.url,
            data={
                "csrfmiddlewaretoken": session.cookies["jira_sandbox_csrftoken"],
                "name": "From the admin",
                "redirect_uris": CALLBACK,
                "permission": "WRITE",
            },
            timeout=10,
        )

        assert "/credentials/" in created.url
        client_id = _element_text(created.text, "client-id")
        client_secret = _element_text(created.text, "client-secret")
        verifier, challenge = pkce_pair()
        answer = sandbox.authorize(
            session, client_id=client_id, redirect_uri=CALLBACK, scope="WRITE", state="a", code_challenge=challenge
        )
        token = token_request(
            sandbox,
            grant_type="authorization_code",
            code=query_of(answer)[1]["code"],
            redirect_uri=CALLBACK,
            client_id=client_id,
            client_secret=client_secret,
            code_verifier=verifier,
        )
        assert token.status_code == 200, token.text
        # The secret is shown once only: the database keeps a hash.
        again = session.get(created.url, timeout=10)
        assert 'id="client-secret"' not in again.text

    def test_cookies_do_not_clash_with_the_main_app_on_the_same_host(self, jira_sandbox_server):
        session = jira_sandbox_server.login(requests.Session())

        names = {cookie.name for cookie in session.cookies}

        assert names == {"jira_sandbox_sessionid", "jira_sandbox_csrftoken"}


def _element_text(html, element_id):
    marker = f'id="{element_id}">'
    start = html.index(marker) + len(marker)
    return html[start : html.index("<", start)].strip()


def test_token_lifetime_and_latency_come_from_the_environment(jira_sandbox_factory):
    """No waiting for a token to expire: its expiry is moved into the past in the sandbox's own database."""
    sandbox = jira_sandbox_factory(env={"SANDBOX_ACCESS_TOKEN_SECONDS": "600", "SANDBOX_TOKEN_LATENCY_MS": "500"})
    credentials, first = connect(sandbox)

    started = time.monotonic()
    response = refresh(sandbox, credentials, first["refresh_token"])
    took = time.monotonic() - started

    assert response.status_code == 200, response.text
    token = response.json()
    assert took >= 0.5  # the configured latency; a token request alone takes milliseconds
    assert first["expires_in"] == token["expires_in"] == 600  # not the default 7200
    assert sandbox.token_grants == 2
    assert bearer_get(sandbox, "/rest/api/2/myself", token["access_token"]).status_code == 200

    # The sandbox stores the same lifetime, and refuses the token once it is over.
    stored_lifetime = on_access_token(sandbox, token["access_token"], (
        "print((row.expires - row.created).total_seconds())\n"
        "row.expires = timezone.now() - datetime.timedelta(seconds=1)\n"
        "row.save(update_fields=['expires'])\n"))
    assert 590 <= float(stored_lifetime) <= 600
    assert bearer_get(sandbox, "/rest/api/2/myself", token["access_token"]).status_code == 401


def on_access_token(sandbox, access_token, statements):
    """Run `statements` in the sandbox's own Django with `row`, the AccessToken of `access_token`; their output."""
    code = (
        "import datetime, hashlib\n"
        "from django.utils import timezone\n"
        "from oauth2_provider.models import AccessToken\n"
        f"row = AccessToken.objects.get(token_checksum=hashlib.sha256({access_token!r}.encode()).hexdigest())\n"
        + statements
    )
    return sandbox.manage("shell", "--no-imports", "-c", code).strip()


def test_server_info_answers_anonymously_like_jira_but_not_to_a_bad_token(jira_sandbox_server):
    anonymous = requests.get(f"{jira_sandbox_server.url}/rest/api/2/serverInfo", timeout=10)
    bad_token = requests.get(f"{jira_sandbox_server.url}/rest/api/2/serverInfo", timeout=10,
                             headers={"Authorization": "Bearer not-a-token"})

    assert anonymous.status_code == 200
    assert anonymous.json()["baseUrl"] == jira_sandbox_server.url
    assert anonymous.json()["deploymentType"] == "Server"
    assert bad_token.status_code == 401
