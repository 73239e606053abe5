"""The sandbox must also behave like Atlassian Cloud's OAuth 2.0 (3LO) wherever a client can tell.

The authorization server is reached as http://127.0.0.1:<port>/cloud-auth and
the API gateway as http://localhost:<port>/cloud-api: two hosts, as
auth.atlassian.com and api.atlassian.com are. Aging (the 90-day and 365-day
limits, the reuse leeway) moves times back in the sandbox's own database or
admin instead of waiting.
"""

import base64
import datetime
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.sandbox.conftest import form_inputs

CLIENT_ID = "sandbox-cloud-client-id"
CLIENT_SECRET = "sandbox-cloud-secret-dev-only-not-a-secret"
CALLBACK = "http://127.0.0.1:8000/oauth/atlassian/callback/"
SITES = {
    "kendis-sandbox": "5d3c8a6e-1f2b-4c7d-9e8a-0b1c2d3e4f51",
    "kendis-other": "a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62",
}
ACCOUNT_IDS = {"jira-admin": "5b10a2844c20165700ede21g", "jira-user2": "5b10ac8d82e05b22cc7d4ef5"}
ALL_SCOPES = "read:jira-work write:jira-work read:jira-user offline_access"
DEAD_REFRESH_TOKEN = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
ADF = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hi"}]}]}


def pkce_pair():
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def auth_url(sandbox):
    return f"{sandbox.url}/cloud-auth"


def api_url(sandbox):
    return f"{sandbox.url.replace('127.0.0.1', 'localhost')}/cloud-api"


def query_of(response):
    assert response.status_code == 302, response.text[:500]
    location = response.headers["Location"]
    return location, {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def authorize_params(**overrides):
    params = {
        "audience": "api.atlassian.com",
        "client_id": CLIENT_ID,
        "scope": ALL_SCOPES,
        "redirect_uri": CALLBACK,
        "state": "cloud-state",
        "response_type": "code",
        "prompt": "consent",
        **overrides,
    }
    return {key: value for key, value in params.items() if value is not None}


def consent(sandbox, session, *, sites=None, accept=True, **overrides):
    """Open the consent screen as the session's user, tick `sites` (names; None keeps the defaults), answer it."""
    page = session.get(f"{auth_url(sandbox)}/authorize", params=authorize_params(**overrides), timeout=10)
    assert page.status_code == 200, page.text[:500]
    data = {"csrfmiddlewaretoken": form_inputs(page.text)["csrfmiddlewaretoken"]}
    data["sites"] = [SITES[name] for name in sites] if sites is not None else list(SITES.values())
    data["accept" if accept else "cancel"] = "Accept" if accept else "Cancel"
    return session.post(page.url, data=data, allow_redirects=False, timeout=10)


def token_post(sandbox, **body):
    return requests.post(f"{auth_url(sandbox)}/oauth/token", json=body, timeout=10)


def exchange(sandbox, code, verifier, **overrides):
    body = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        **overrides,
    }
    return token_post(sandbox, **{key: value for key, value in body.items() if value is not None})


def connect(sandbox, *, user=None, sites=None, scope=ALL_SCOPES):
    """Consent (as the administrator unless `user` = (username, password)) and redeem the code: the token JSON."""
    session = sandbox.login(requests.Session(), *(user or ()))
    verifier, challenge = pkce_pair()
    answer = consent(sandbox, session, sites=sites, scope=scope, code_challenge=challenge, code_challenge_method="S256")
    response = exchange(sandbox, query_of(answer)[1]["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(sandbox, refresh_token, **overrides):
    body = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **overrides}
    return token_post(sandbox, refresh_token=refresh_token, **body)


def api_get(sandbox, path, access_token):
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(f"{api_url(sandbox)}{path}", headers=headers, timeout=10)


def jira_path(site_name, resource):
    return f"/ex/jira/{SITES[site_name]}/rest/api/3/{resource}"


def in_sandbox(sandbox, statements, *, token):
    """Run `statements` in the sandbox's own Django with `row`, the RefreshToken of `token`; their output."""
    code = (
        "import datetime, hashlib\n"
        "from django.utils import timezone\n"
        "from jira_sandbox.cloud.models import RefreshToken\n"
        f"row = RefreshToken.objects.select_related('consent').get("
        f"token_checksum=hashlib.sha256({token!r}.encode()).hexdigest())\n" + statements
    )
    return sandbox.manage("shell", "--no-imports", "-c", code).strip()


def age_replacement(sandbox, refresh_token, seconds):
    """Pretend `refresh_token` was replaced `seconds` ago."""
    in_sandbox(
        sandbox,
        f"row.replaced_at = timezone.now() - datetime.timedelta(seconds={seconds})\n"
        "row.save(update_fields=['replaced_at'])\n",
        token=refresh_token,
    )


class TestConsentScreen:
    def test_needs_the_sandbox_login(self, jira_sandbox_server):
        response = requests.get(
            f"{auth_url(jira_sandbox_server)}/authorize", params=authorize_params(), allow_redirects=False, timeout=10
        )

        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login/?next=/cloud-auth/authorize")

    def test_names_the_app_the_scopes_and_offers_every_site_checked(self, jira_sandbox_server):
        session = jira_sandbox_server.login(requests.Session())

        page = session.get(f"{auth_url(jira_sandbox_server)}/authorize", params=authorize_params(), timeout=10)

        assert page.status_code == 200
        assert 'id="app-name">Kendis Integration (sandbox)<' in page.text
        for scope in ALL_SCOPES.split():
            assert f"<code>{scope}</code>" in page.text
        for name, cloud_id in SITES.items():
            assert f'value="{cloud_id}" id="site-{name}" checked' in page.text
            assert f'{name} <span class="hint-url">(https://{name}.atlassian.net)</span>' in page.text
        assert 'id="accept"' in page.text and 'id="cancel"' in page.text

    def test_cancel_sends_access_denied_back_with_the_state(self, jira_sandbox_server):
        session = jira_sandbox_server.login(requests.Session())

        location, params = query_of(consent(jira_sandbox_server, session, accept=False))

        assert location.startswith(CALLBACK + "?")
        assert params["error"] == "access_denied" and params["state"] == "cloud-state"
        assert "code" not in params

    def test_accept_without_a_site_asks_again(self, jira_sandbox_server):
        session = jira_sandbox_server.login(requests.Session())

        response = consent(jira_sandbox_server, session, sites=[])

        assert response.status_code == 200
        assert 'id="choose-a-site"' in response.text

    @pytest.mark.parametrize(
        "overrides, error",
        [
            ({"scope": "read:jira-work READ"}, "invalid_scope"),
            ({"scope": None}, "invalid_scope"),
            ({"audience": None}, "access_denied"),
            ({"response_type": "token"}, "unsupported_response_type"),
            ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request"),
        ],
    )
    def test_a_bad_request_goes_back_to_the_callback_with_the_error(self, jira_sandbox_server, overrides, error):
        session = jira_sandbox_server.login(requests.Session())

        response = session.get(
            f"{auth_url(jira_sandbox_server)}/authorize",
            params=authorize_params(**overrides),
            allow_redirects=False,
            timeout=10,
        )

        location, params = query_of(response)
        assert location.startswith(CALLBACK + "?")
        assert params["error"] == error and params["error_description"]
        assert params["state"] == "cloud-state"

    @pytest.mark.parametrize(
        "overrides",
        [
            {"client_id": "someone-elses-app"},
            {"redirect_uri": CALLBACK.rstrip("/")},
            {"redirect_uri": CALLBACK.replace("127.0.0.1", "localhost")},
        ],
    )
    def test_an_unknown_client_or_callback_gets_an_error_page_never_a_redirect(self, jira_sandbox_server, overrides):
        session = jira_sandbox_server.login(requests.Session())

        response = session.get(
            f"{auth_url(jira_sandbox_server)}/authorize",
            params=authorize_params(**overrides),
            allow_redirects=False,
            timeout=10,
        )

        assert response.status_code == 400
        assert "Location" not in response.headers
        assert 'id="error-code"' in response.text


def test_the_whole_flow_reaches_only_the_chosen_site_as_the_consenting_person(jira_sandbox_server):
    sandbox = jira_sandbox_server
    before = sandbox.stats()["cloud"]
    session = sandbox.login(requests.Session(), sandbox.user2_username, sandbox.user2_password)
    verifier, challenge = pkce_pair()

    answer = consent(sandbox, session, sites=["kendis-other"], code_challenge=challenge, code_challenge_method="S256")
    location, params = query_of(answer)
    assert location.startswith(CALLBACK + "?") and params["state"] == "cloud-state"
    response = exchange(sandbox, params["code"], verifier)

    assert response.status_code == 200, response.text
    token = response.json()
    assert set(token) == {"access_token", "refresh_token", "expires_in", "scope", "token_type"}
    assert token["expires_in"] == 3600 and token["token_type"] == "Bearer"
    assert token["scope"].split() == ALL_SCOPES.split()
    assert len(token["access_token"]) > 1000  # Atlassian's are long JWTs: no 255-character columns
    resources = api_get(sandbox, "/oauth/token/accessible-resources", token["access_token"])
    assert resources.status_code == 200
    assert [{key: site[key] for key in ("id", "url", "name", "scopes")} for site in resources.json()] == [
        {
            "id": SITES["kendis-other"],
            "url": "https://kendis-other.atlassian.net",
            "name": "kendis-other",
            "scopes": ["read:jira-work", "write:jira-work", "read:jira-user"],
        }
    ]
    assert resources.json()[0]["avatarUrl"].startswith("https://")

    myself = api_get(sandbox, jira_path("kendis-other", "myself"), token["access_token"]).json()
    assert myself["accountId"] == ACCOUNT_IDS["jira-user2"]
    assert myself["displayName"] == "Jira Sandbox User Two"
    assert myself["accountType"] == "atlassian" and myself["active"] is True
    assert "name" not in myself and "key" not in myself
    info = api_get(sandbox, jira_path("kendis-other", "serverInfo"), token["access_token"]).json()
    assert info["baseUrl"] == "https://kendis-other.atlassian.net" and info["deploymentType"] == "Cloud"

    created = requests.post(
        f"{api_url(sandbox)}{jira_path('kendis-other', 'issue')}",
        json={
            "fields": {
                "project": {"key": "DEMO"},
                "issuetype": {"name": "Task"},
                "summary": "From 3LO",
                "description": ADF,
            }
        },
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    issue = api_get(sandbox, jira_path("kendis-other", f"issue/{created.json()['key']}"), token["access_token"])
    assert issue.json()["fields"]["reporter"]["accountId"] == ACCOUNT_IDS["jira-user2"]
    assert issue.json()["fields"]["description"] == ADF
    found = api_get(sandbox, jira_path("kendis-other", "search?jql=project=DEMO&maxResults=1"), token["access_token"])
    assert found.json()["maxResults"] == 1 and found.json()["total"] >= 1

    # The site that was not ticked stays out of reach, whatever the token.
    assert api_get(sandbox, jira_path("kendis-sandbox", "myself"), token["access_token"]).status_code == 401
    after = sandbox.stats()["cloud"]
    assert after["by_grant_type"]["authorization_code"]["200"] == (
        before["by_grant_type"].get("authorization_code", {}).get("200", 0) + 1
    )


class TestTokenEndpoint:
    def test_a_form_encoded_body_is_refused(self, jira_sandbox_server):
        before = jira_sandbox_server.stats()["cloud"]["token_requests"]

        response = requests.post(
            f"{auth_url(jira_sandbox_server)}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": "x",
            },
            timeout=10,
        )

        assert response.status_code == 415
        assert response.json()["error"] == "invalid_request"
        assert "JSON" in response.json()["error_description"]
        assert jira_sandbox_server.stats()["cloud"]["token_requests"] == before + 1

    @pytest.mark.parametrize("secret", ["wrong-secret", None])
    def test_a_wrong_or_missing_client_secret_is_401(self, jira_sandbox_server, secret):
        token = connect(jira_sandbox_server)

        response = refresh(jira_sandbox_server, token["refresh_token"], client_secret=secret)

        assert response.status_code == 401
        assert response.json() == {"error": "access_denied", "error_description": "Unauthorized"}
        # The refused attempt has not used the refresh token up.
        assert refresh(jira_sandbox_server, token["refresh_token"]).status_code == 200

    def test_a_code_is_single_use_and_checks_pkce_and_redirect_uri(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        session = sandbox.login(requests.Session())
        verifier, challenge = pkce_pair()
        answer = consent(sandbox, session, code_challenge=challenge, code_challenge_method="S256")
        code = query_of(answer)[1]["code"]

        wrong_verifier = exchange(sandbox, code, pkce_pair()[0])
        no_verifier = exchange(sandbox, code, None)
        wrong_redirect = exchange(sandbox, code, verifier, redirect_uri=CALLBACK + "x")
        first = exchange(sandbox, code, verifier)
        second = exchange(sandbox, code, verifier)

        for refused in (wrong_verifier, no_verifier, wrong_redirect, second):
            assert refused.status_code == 403 and refused.json()["error"] == "invalid_grant"
        assert first.status_code == 200

    def test_without_offline_access_there_is_no_refresh_token(self, jira_sandbox_server):
        token = connect(jira_sandbox_server, scope="read:jira-work read:jira-user")

        assert "refresh_token" not in token
        assert token["scope"] == "read:jira-work read:jira-user"

    def test_an_unknown_grant_type_is_refused(self, jira_sandbox_server):
        response = token_post(jira_sandbox_server, grant_type="password", client_id=CLIENT_ID)

        assert response.status_code == 403
        assert response.json()["error"] == "unsupported_grant_type"


class TestRotatingRefreshTokens:
    def test_every_refresh_rotates_the_pair(self, jira_sandbox_server):
        first = connect(jira_sandbox_server)

        response = refresh(jira_sandbox_server, first["refresh_token"])

        assert response.status_code == 200, response.text
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["expires_in"] == 3600 and second["scope"] == first["scope"]
        assert api_get(jira_sandbox_server, jira_path("kendis-sandbox", "myself"), second["access_token"]).ok
        assert refresh(jira_sandbox_server, second["refresh_token"]).status_code == 200

    def test_a_replaced_refresh_token_reused_within_the_leeway_still_gets_a_new_pair(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        first = connect(sandbox)
        second = refresh(sandbox, first["refresh_token"]).json()
        age_replacement(sandbox, first["refresh_token"], 9 * 60)
        before = sandbox.stats()["cloud"]["reuse_within_leeway"]

        again = refresh(sandbox, first["refresh_token"])

        assert again.status_code == 200, again.text
        assert again.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
        assert sandbox.stats()["cloud"]["reuse_within_leeway"] == before + 1
        # The replaced pair's access token also lives on through the leeway.
        assert api_get(sandbox, "/oauth/token/accessible-resources", first["access_token"]).status_code == 200
        assert refresh(sandbox, second["refresh_token"]).status_code == 200

    def test_reuse_after_the_leeway_kills_the_whole_family(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        first = connect(sandbox)
        second = refresh(sandbox, first["refresh_token"]).json()
        age_replacement(sandbox, first["refresh_token"], 11 * 60)
        before = sandbox.stats()["cloud"]

        reuse = refresh(sandbox, first["refresh_token"])

        assert reuse.status_code == 403
        assert reuse.json() == DEAD_REFRESH_TOKEN
        newest = refresh(sandbox, second["refresh_token"])
        assert newest.status_code == 403 and newest.json() == DEAD_REFRESH_TOKEN
        assert api_get(sandbox, jira_path("kendis-sandbox", "myself"), second["access_token"]).status_code == 401
        after = sandbox.stats()["cloud"]
        assert after["families_killed"] == before["families_killed"] + 1
        refused_before = before["by_grant_type"]["refresh_token"].get("403", 0)
        assert after["by_grant_type"]["refresh_token"]["403"] == refused_before + 2

    def test_an_unknown_refresh_token_is_403_invalid_grant(self, jira_sandbox_server):
        response = refresh(jira_sandbox_server, "not-a-refresh-token")

        assert response.status_code == 403 and response.json() == DEAD_REFRESH_TOKEN

    def test_a_refresh_token_dies_after_90_days_unused_and_rotation_starts_the_count_again(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        old = connect(sandbox)
        young = connect(sandbox)
        aged = "row.issued = timezone.now() - datetime.timedelta(days={})\nrow.save(update_fields=['issued'])\n"
        in_sandbox(sandbox, aged.format(91), token=old["refresh_token"])
        in_sandbox(sandbox, aged.format(89), token=young["refresh_token"])

        dead = refresh(sandbox, old["refresh_token"])
        rotated = refresh(sandbox, young["refresh_token"])

        assert dead.status_code == 403 and dead.json() == DEAD_REFRESH_TOKEN
        assert rotated.status_code == 200
        assert refresh(sandbox, rotated.json()["refresh_token"]).status_code == 200

    def test_every_refresh_token_of_a_consent_dies_365_days_after_it_aged_in_the_admin(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        token = connect(sandbox)
        consent_id = in_sandbox(sandbox, "print(row.consent_id)\n", token=token["refresh_token"])
        admin = sandbox.login(requests.Session())

        def set_first_consent(days_ago):
            change_url = f"{sandbox.url}/admin/cloud/consent/{consent_id}/change/"
            page = admin.get(change_url, timeout=10)
            assert "First consent" in page.text and "Refresh tokens" in page.text
            moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)
            saved = admin.post(
                change_url,
                data={
                    "csrfmiddlewaretoken": form_inputs(page.text)["csrfmiddlewaretoken"],
                    "consented_at_0": moment.strftime("%Y-%m-%d"),
                    "consented_at_1": moment.strftime("%H:%M:%S"),
                    "_save": "Save",
                },
                allow_redirects=False,
                timeout=10,
            )
            assert saved.status_code == 302, saved.text[:1000]

        set_first_consent(364)
        rotated = refresh(sandbox, token["refresh_token"])
        assert rotated.status_code == 200
        set_first_consent(366)
        # Rotation a day earlier did not move the limit: it counts from the first consent.
        dead = refresh(sandbox, rotated.json()["refresh_token"])

        assert dead.status_code == 403 and dead.json() == DEAD_REFRESH_TOKEN


class TestApiGateway:
    @pytest.mark.parametrize("token", [None, "not-a-token"])
    def test_a_missing_or_unknown_token_is_401_json(self, jira_sandbox_server, token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        response = requests.get(
            f"{api_url(jira_sandbox_server)}/oauth/token/accessible-resources", headers=headers, timeout=10
        )

        assert response.status_code == 401
        assert response.json() == {"code": 401, "message": "Unauthorized"}

    @pytest.mark.parametrize("cloud_id", [SITES["kendis-sandbox"], "0f0e0d0c-0b0a-4998-8776-655443322110", "nope"])
    def test_a_cloud_id_the_consent_does_not_cover_is_refused(self, jira_sandbox_server, cloud_id):
        token = connect(jira_sandbox_server, sites=["kendis-other"])

        response = api_get(jira_sandbox_server, f"/ex/jira/{cloud_id}/rest/api/3/myself", token["access_token"])

        assert response.status_code == 401
        assert response.json() == {"code": 401, "message": "Unauthorized"}

    def test_creating_an_issue_needs_write_jira_work(self, jira_sandbox_server):
        token = connect(jira_sandbox_server, scope="read:jira-work read:jira-user offline_access")

        response = requests.post(
            f"{api_url(jira_sandbox_server)}{jira_path('kendis-sandbox', 'issue')}",
            json={"fields": {"project": {"key": "DEMO"}, "issuetype": {"name": "Task"}, "summary": "No"}},
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=10,
        )

        assert response.status_code == 401
        assert response.json() == {"code": 401, "message": "Unauthorized; scope does not match"}

    def test_a_plain_string_description_is_refused_as_not_adf(self, jira_sandbox_server):
        token = connect(jira_sandbox_server)

        response = requests.post(
            f"{api_url(jira_sandbox_server)}{jira_path('kendis-sandbox', 'issue')}",
            json={
                "fields": {
                    "project": {"key": "DEMO"},
                    "issuetype": {"name": "Task"},
                    "summary": "v2 habit",
                    "description": "plain text",
                }
            },
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=10,
        )

        assert response.status_code == 400
        assert "Atlassian Document" in response.json()["errors"]["description"]

    def test_the_api_is_not_under_the_authorization_server_and_vice_versa(self, jira_sandbox_server):
        token = connect(jira_sandbox_server)

        derived = requests.get(
            f"{auth_url(jira_sandbox_server)}/oauth/token/accessible-resources",
            headers={"Authorization": f"Bearer {token['access_token']}"},
            timeout=10,
        )

        assert derived.status_code == 404
        assert requests.post(f"{api_url(jira_sandbox_server)}/oauth/token", json={}, timeout=10).status_code == 404


def test_lifetimes_leeway_app_and_latency_come_from_the_environment(jira_sandbox_factory):
    sandbox = jira_sandbox_factory(
        env={
            "SANDBOX_CLOUD_ACCESS_TOKEN_SECONDS": "120",
            "SANDBOX_CLOUD_REUSE_LEEWAY_SECONDS": "0",
            "SANDBOX_CLOUD_REFRESH_ABSOLUTE_SECONDS": str(24 * 3600),
            "SANDBOX_CLOUD_CLIENT_ID": "custom-client",
            "SANDBOX_CLOUD_CLIENT_SECRET": "custom-secret",
            "SANDBOX_CLOUD_CALLBACK_URL": "http://127.0.0.1:9999/cb",
            "SANDBOX_TOKEN_LATENCY_MS": "300",
        }
    )
    session = sandbox.login(requests.Session())
    verifier, challenge = pkce_pair()
    answer = consent(
        sandbox,
        session,
        client_id="custom-client",
        redirect_uri="http://127.0.0.1:9999/cb",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert query_of(answer)[0].startswith("http://127.0.0.1:9999/cb?")
    body = dict(client_id="custom-client", client_secret="custom-secret")
    token = exchange(sandbox, query_of(answer)[1]["code"], verifier, redirect_uri="http://127.0.0.1:9999/cb", **body)
    assert token.status_code == 200, token.text
    first = token.json()
    assert first["expires_in"] == 120

    started = time.monotonic()
    second = refresh(sandbox, first["refresh_token"], **body)
    assert time.monotonic() - started >= 0.3  # the configured latency; the request alone takes milliseconds
    assert second.status_code == 200
    # A leeway of 0: any reuse of a replaced token kills the family.
    assert refresh(sandbox, first["refresh_token"], **body).json() == DEAD_REFRESH_TOKEN
    assert refresh(sandbox, second.json()["refresh_token"], **body).status_code == 403

    # An absolute limit of one day: a consent two days old is over.
    other = connect_with(sandbox, session, body)
    in_sandbox(
        sandbox,
        "row.consent.consented_at = timezone.now() - datetime.timedelta(days=2)\n"
        "row.consent.save(update_fields=['consented_at'])\n",
        token=other["refresh_token"],
    )
    assert refresh(sandbox, other["refresh_token"], **body).json() == DEAD_REFRESH_TOKEN
    assert sandbox.stats()["cloud"]["families_killed"] == 1


def connect_with(sandbox, session, credentials):
    verifier, challenge = pkce_pair()
    answer = consent(
        sandbox,
        session,
        client_id=credentials["client_id"],
        redirect_uri="http://127.0.0.1:9999/cb",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    code = query_of(answer)[1]["code"]
    return exchange(sandbox, code, verifier, redirect_uri="http://127.0.0.1:9999/cb", **credentials).json()


class TestRestApiVersion2:
    """Jira Cloud serves REST v2 beside v3: the same resources, with v2's plain-text description."""

    @pytest.mark.parametrize("resource", ["myself", "serverInfo"])
    def test_v2_answers_as_v3(self, jira_sandbox_server, resource):
        token = connect(jira_sandbox_server)
        v3 = api_get(jira_sandbox_server, jira_path("kendis-sandbox", resource), token["access_token"])
        v2 = api_get(jira_sandbox_server, jira_path("kendis-sandbox", resource).replace("/api/3/", "/api/2/"),
                     token["access_token"])

        assert v2.status_code == 200, v2.text
        assert v2.json() == v3.json()

    def test_a_v2_issue_takes_a_plain_text_description_and_v3_reads_it_as_a_document(self, jira_sandbox_server):
        token = connect(jira_sandbox_server)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        v2_issue = f"{api_url(jira_sandbox_server)}{jira_path('kendis-sandbox', 'issue')}".replace("/api/3/", "/api/2/")

        created = requests.post(v2_issue, headers=headers, timeout=10, json={"fields": {
            "project": {"key": "DEMO"}, "issuetype": {"name": "Task"}, "summary": "v2 habit",
            "description": "plain text"}})

        assert created.status_code == 201, created.text
        assert "/rest/api/2/issue/" in created.json()["self"]
        as_v2 = api_get(jira_sandbox_server, jira_path("kendis-sandbox", f"issue/{created.json()['key']}")
                        .replace("/api/3/", "/api/2/"), token["access_token"]).json()
        as_v3 = api_get(jira_sandbox_server, jira_path("kendis-sandbox", f"issue/{created.json()['key']}"),
                        token["access_token"]).json()
        assert as_v2["fields"]["description"] == "plain text"
        assert as_v3["fields"]["description"]["type"] == "doc"
        assert as_v3["fields"]["description"]["content"][0]["content"][0]["text"] == "plain text"
