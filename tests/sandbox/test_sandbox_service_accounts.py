"""Service accounts in the sandbox: client credentials tokens on Data Center and on Atlassian Cloud.

Each test talks to a real sandbox server over HTTP (see conftest.py), as the product will talk to Jira: a
service account is created with `sandbox_create_service_account`, asks for tokens with its Client ID and Secret,
calls REST as itself, and once disabled (`sandbox_disable_service_account`) is refused with invalid_client.
"""

import re
import uuid

import pytest
import requests

from tests.sandbox.conftest import form_inputs

DC_TOKEN = "/rest/oauth2/latest/token"
SANDBOX_SITE = "5d3c8a6e-1f2b-4c7d-9e8a-0b1c2d3e4f51"
OTHER_SITE = "a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62"


def unique(name):
    return f"{name} {uuid.uuid4().hex[:6]}"


def dc_token(sandbox, account, scope="WRITE", **overrides):
    form = {"grant_type": "client_credentials", "client_id": account["client_id"],
            "client_secret": account["client_secret"], "scope": scope, **overrides}
    return requests.post(f"{sandbox.url}{DC_TOKEN}", data={k: v for k, v in form.items() if v is not None},
                         timeout=10)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def cloud_token(sandbox, account, **overrides):
    body = {"grant_type": "client_credentials", "client_id": account["client_id"],
            "client_secret": account["client_secret"], **overrides}
    return requests.post(f"{sandbox.url}/cloud-auth/oauth/token", json={k: v for k, v in body.items() if v is not None},
                         timeout=10)


def gateway(sandbox, path, token, method="GET", **kwargs):
    url = f"{sandbox.url.replace('127.0.0.1', 'localhost')}/cloud-api{path}"
    return requests.request(method, url, headers=bearer(token), timeout=10, **kwargs)


class TestDataCenter:
    def test_a_service_account_gets_an_hour_token_without_refresh_token_and_rest_acts_as_it(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Kendis Sync"))

        response = dc_token(sandbox, account)

        assert response.status_code == 200, response.text
        token = response.json()
        assert token["expires_in"] == 3600 and token["scope"] == "WRITE"
        assert token["token_type"].lower() == "bearer" and "refresh_token" not in token
        myself = requests.get(f"{sandbox.url}/rest/api/2/myself", headers=bearer(token["access_token"]), timeout=10)
        assert myself.status_code == 200
        assert (myself.json()["name"], myself.json()["displayName"]) == (account["username"], account["display_name"])
        created = requests.post(f"{sandbox.url}/rest/api/2/issue", headers=bearer(token["access_token"]), timeout=10,
                                json={"fields": {"project": {"key": "DEMO"}, "issuetype": {"name": "Task"},
                                                 "summary": "Made by a service account"}})
        assert created.status_code == 201, created.text
        issue = requests.get(created.json()["self"], headers=bearer(token["access_token"]), timeout=10).json()
        assert issue["fields"]["reporter"]["name"] == account["username"]
        assert sandbox.stats()["service_accounts"][account["client_id"]] == {"200": 1}

    def test_read_and_write_together_are_one_request_and_read_only_cannot_write(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        reader = sandbox.create_service_account(unique("Reader"), scope="READ")

        both = dc_token(sandbox, sandbox.create_service_account(unique("Writer")), scope="READ WRITE")
        read = dc_token(sandbox, reader, scope="READ").json()["access_token"]
        write_refused = dc_token(sandbox, reader, scope="WRITE")
        post = requests.post(f"{sandbox.url}/rest/api/2/issue", headers=bearer(read), timeout=10,
                             json={"fields": {"project": {"key": "DEMO"}, "issuetype": {"name": "Task"},
                                              "summary": "x"}})

        assert both.status_code == 200 and both.json()["scope"] == "READ WRITE"
        assert write_refused.status_code == 400 and write_refused.json()["error"] == "invalid_scope"
        assert post.status_code == 403

    @pytest.mark.parametrize("scope", ["ADMIN", "SYSTEM_ADMIN", "WRITE ADMIN", None])
    def test_admin_scopes_or_no_scope_are_invalid_scope(self, jira_sandbox_server, scope):
        account = jira_sandbox_server.create_service_account(unique("Admin wannabe"))

        response = dc_token(jira_sandbox_server, account, scope=scope)

        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"

    def test_a_wrong_secret_is_invalid_client(self, jira_sandbox_server):
        account = jira_sandbox_server.create_service_account(unique("Wrong secret"))

        response = dc_token(jira_sandbox_server, account, client_secret="not-the-secret")

        assert response.status_code == 401 and response.json()["error"] == "invalid_client"

    def test_a_disabled_service_account_is_invalid_client_and_its_tokens_stop(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Disabled"))
        token = dc_token(sandbox, account).json()["access_token"]

        sandbox.disable_service_account(account["client_id"])
        refused = dc_token(sandbox, account)
        myself = requests.get(f"{sandbox.url}/rest/api/2/myself", headers=bearer(token), timeout=10)
        sandbox.disable_service_account(account["client_id"], enable=True)
        again = dc_token(sandbox, account)

        assert refused.status_code == 401 and refused.json() == {"error": "invalid_client"}
        assert myself.status_code == 401
        assert again.status_code == 200

    def test_a_deleted_service_account_is_invalid_client(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Deleted"))
        sandbox.manage("shell", "--no-imports", "-c",
                       "from jira_sandbox.serviceaccounts.models import ServiceAccount\n"
                       f"ServiceAccount.objects.get(credential__client_id={account['client_id']!r}).delete()")

        response = dc_token(sandbox, account)

        assert response.status_code == 401 and response.json() == {"error": "invalid_client"}

    def test_a_service_account_cannot_log_in_nor_use_the_consent_flow(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("No login"))

        with pytest.raises(RuntimeError, match="login failed"):
            sandbox.login(requests.Session(), account["username"], account["client_secret"])
        code_grant = dc_token(sandbox, account, grant_type="authorization_code", code="x",
                              redirect_uri="http://127.0.0.1:8000/cb")

        assert code_grant.status_code in (400, 401) and code_grant.json()["error"] in (
            "unauthorized_client", "invalid_grant")

    def test_the_token_lifetime_comes_from_the_environment(self, jira_sandbox_factory):
        sandbox = jira_sandbox_factory(env={"SANDBOX_SERVICE_ACCOUNT_TOKEN_SECONDS": "120"})
        account = sandbox.create_service_account("Short lived")

        assert dc_token(sandbox, account).json()["expires_in"] == 120


class TestCloud:
    def test_a_service_account_token_reaches_its_sites_through_the_gateway_as_itself(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Cloud Sync"), cloud=True)

        response = cloud_token(sandbox, account)

        assert response.status_code == 200, response.text
        token = response.json()
        assert set(token) == {"access_token", "expires_in", "token_type", "scope"}  # never a refresh token
        assert token["expires_in"] == 3600 and token["scope"] == "read:jira-work write:jira-work read:jira-user"
        resources = gateway(sandbox, "/oauth/token/accessible-resources", token["access_token"])
        assert [(site["id"], site["name"]) for site in resources.json()] == [(SANDBOX_SITE, "kendis-sandbox")]
        myself = gateway(sandbox, f"/ex/jira/{SANDBOX_SITE}/rest/api/2/myself", token["access_token"]).json()
        assert myself["accountId"] == account["account_id"] and myself["accountType"] == "app"
        assert myself["displayName"] == account["display_name"]
        assert myself["emailAddress"].endswith("@serviceaccount.atlassian.com")
        other_site = gateway(sandbox, f"/ex/jira/{OTHER_SITE}/rest/api/3/myself", token["access_token"])
        assert other_site.status_code == 401
        created = gateway(sandbox, f"/ex/jira/{SANDBOX_SITE}/rest/api/2/issue", token["access_token"], "POST",
                          json={"fields": {"project": {"key": "DEMO"}, "issuetype": {"name": "Task"},
                                           "summary": "Made by a Cloud service account"}})
        assert created.status_code == 201, created.text
        issue = gateway(sandbox, f"/ex/jira/{SANDBOX_SITE}/rest/api/3/issue/{created.json()['key']}",
                        token["access_token"]).json()
        assert issue["fields"]["reporter"]["accountId"] == account["account_id"]
        assert sandbox.stats()["cloud"]["service_accounts"][account["client_id"]] == {"200": 1}

    def test_scopes_asked_for_must_be_the_credentials_and_offline_access_gives_no_refresh_token(
            self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        reader = sandbox.create_service_account(unique("Cloud reader"), cloud=True,
                                                scopes="read:jira-work read:jira-user")

        narrowed = cloud_token(sandbox, reader, scope="read:jira-user offline_access")
        too_wide = cloud_token(sandbox, reader, scope="read:jira-work write:jira-work")
        token = cloud_token(sandbox, reader).json()["access_token"]
        post = gateway(sandbox, f"/ex/jira/{SANDBOX_SITE}/rest/api/3/issue", token, "POST",
                       json={"fields": {"project": {"key": "DEMO"}, "issuetype": {"name": "Task"}, "summary": "x"}})
        narrow_token = narrowed.json()["access_token"]
        search = gateway(sandbox, f"/ex/jira/{SANDBOX_SITE}/rest/api/3/search", narrow_token)

        assert narrowed.status_code == 200 and narrowed.json()["scope"] == "read:jira-user"
        assert "refresh_token" not in narrowed.json()
        assert too_wide.status_code == 403 and too_wide.json()["error"] == "invalid_scope"
        assert "write:jira-work" in too_wide.json()["error_description"]
        assert post.status_code == 401 and post.json()["message"] == "Unauthorized; scope does not match"
        assert search.status_code == 401

    def test_a_service_account_on_both_sites_sees_both(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Two sites"), cloud=True,
                                                 sites=["kendis-sandbox", "kendis-other"])

        token = cloud_token(sandbox, account).json()["access_token"]

        names = [site["name"] for site in gateway(sandbox, "/oauth/token/accessible-resources", token).json()]
        assert names == ["kendis-other", "kendis-sandbox"]

    def test_a_wrong_secret_is_access_denied_and_a_disabled_account_invalid_client(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Cloud disabled"), cloud=True)
        token = cloud_token(sandbox, account).json()["access_token"]

        wrong = cloud_token(sandbox, account, client_secret="not-the-secret")
        sandbox.disable_service_account(account["client_id"])
        refused = cloud_token(sandbox, account)
        resources = gateway(sandbox, "/oauth/token/accessible-resources", token)
        sandbox.disable_service_account(account["client_id"], enable=True)

        assert wrong.status_code == 401
        assert wrong.json() == {"error": "access_denied", "error_description": "Unauthorized"}
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert resources.status_code == 401
        assert cloud_token(sandbox, account).status_code == 200

    def test_a_form_body_or_a_foreign_audience_is_refused(self, jira_sandbox_server):
        sandbox = jira_sandbox_server
        account = sandbox.create_service_account(unique("Cloud form"), cloud=True)

        form = requests.post(f"{sandbox.url}/cloud-auth/oauth/token", timeout=10,
                             data={"grant_type": "client_credentials", **{k: account[k] for k in
                                                                          ("client_id", "client_secret")}})
        audience = cloud_token(sandbox, account, audience="example.com")

        assert form.status_code == 415
        assert audience.status_code == 403 and audience.json()["error"] == "access_denied"

    def test_a_service_account_is_refused_at_creation_for_scopes_or_sites_that_do_not_exist(self,
                                                                                           jira_sandbox_server):
        with pytest.raises(RuntimeError, match="offline_access"):
            jira_sandbox_server.create_service_account("Bad", cloud=True, scopes="read:jira-work offline_access")
        with pytest.raises(RuntimeError, match="No site named nowhere"):
            jira_sandbox_server.create_service_account("Bad", cloud=True, sites=["nowhere"])


def test_the_sandbox_admin_lists_service_accounts_apart_from_application_links_and_disables_them(
        jira_sandbox_server):
    sandbox = jira_sandbox_server
    dc = sandbox.create_service_account(unique("Listed DC"))
    cloud = sandbox.create_service_account(unique("Listed Cloud"), cloud=True)
    session = sandbox.login(requests.Session())

    dc_list = session.get(f"{sandbox.url}/admin/serviceaccounts/serviceaccount/", timeout=10)
    cloud_list = session.get(f"{sandbox.url}/admin/cloud/cloudserviceaccount/", timeout=10)
    links = session.get(f"{sandbox.url}/admin/applinks/incominglink/", timeout=10)
    assert dc_list.status_code == cloud_list.status_code == links.status_code == 200
    assert dc["display_name"] in dc_list.text and dc["client_id"] in dc_list.text
    assert cloud["display_name"] in cloud_list.text and cloud["account_id"] in cloud_list.text
    assert dc["client_id"] not in links.text  # a service account's credential is not an application link
    assert dc["client_secret"] not in dc_list.text and cloud["client_secret"] not in cloud_list.text

    # The admin's action "Disable selected service accounts", as a Jira admin would click it.
    match = re.search(r'/admin/serviceaccounts/serviceaccount/(\d+)/change/[^"]*"[^>]*>' + re.escape(
        dc["display_name"]), dc_list.text)
    assert match, "the service account's row links to its page"
    done = session.post(f"{sandbox.url}/admin/serviceaccounts/serviceaccount/", timeout=10, data={
        "csrfmiddlewaretoken": form_inputs(dc_list.text)["csrfmiddlewaretoken"], "action": "disable",
        "_selected_action": match.group(1)})
    assert done.status_code == 200 and "Disabled 1 service account" in done.text
    assert dc_token(sandbox, dc).json() == {"error": "invalid_client"}
