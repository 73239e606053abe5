"""The shared fake Jira's service accounts (tests/doubles/fake_jira.py): the contract other tests rely on.

The token-cache and single-flight tests count `client_credentials_requests`, the break-alert tests use
`disable_service_account`: if the double answered differently from the sandbox and Jira, those tests would
prove nothing. Plain HTTP against the double, no database.
"""

import threading

import requests

from tests.doubles.fake_jira import CLOUD_ID


def dc_token(fake, client_id="sa-dc", secret="dc-secret", scope="WRITE"):
    return requests.post(fake.base_url + "/rest/oauth2/latest/token", timeout=5, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope})


def cloud_token(fake, client_id="sa-cloud", secret="cloud-secret", **extra):
    return requests.post(fake.auth_url + "/oauth/token", timeout=5, json={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, **extra})


def test_a_dc_service_account_gets_a_token_per_request_counted_per_client_and_myself_is_it(fake_jira):
    fake_jira.add_service_account("sa-dc", "dc-secret", user="kendis-sync", display_name="Kendis Sync")

    first, second = dc_token(fake_jira), dc_token(fake_jira, scope="READ WRITE")

    assert first.status_code == second.status_code == 200
    assert "refresh_token" not in first.json() and first.json()["expires_in"] == 3600
    assert first.json()["access_token"] != second.json()["access_token"]
    assert fake_jira.client_credentials_requests["sa-dc"] == fake_jira.client_credentials_grants["sa-dc"] == 2
    myself = requests.get(fake_jira.base_url + "/rest/api/2/myself", timeout=5,
                          headers={"Authorization": f"Bearer {first.json()['access_token']}"})
    assert myself.json()["name"] == "kendis-sync" and myself.json()["displayName"] == "Kendis Sync"


def test_dc_scopes_beyond_the_account_or_admin_are_invalid_scope_and_a_wrong_secret_invalid_client(fake_jira):
    fake_jira.add_service_account("sa-dc", "dc-secret", scope="READ")

    assert dc_token(fake_jira, scope="WRITE").json() == {"error": "invalid_scope"}
    assert dc_token(fake_jira, scope="ADMIN").status_code == 400
    wrong = dc_token(fake_jira, secret="nope")
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client"})
    assert fake_jira.client_credentials_requests["sa-dc"] == 3 and fake_jira.client_credentials_grants["sa-dc"] == 0


def test_a_disabled_service_account_is_invalid_client_and_its_token_stops(fake_jira):
    fake_jira.add_service_account("sa-dc", "dc-secret")
    token = dc_token(fake_jira, scope="READ").json()["access_token"]

    fake_jira.disable_service_account("sa-dc")

    refused = dc_token(fake_jira)
    assert (refused.status_code, refused.json()) == (401, {"error": "invalid_client"})
    myself = requests.get(fake_jira.base_url + "/rest/api/2/myself", timeout=5,
                          headers={"Authorization": f"Bearer {token}"})
    assert myself.status_code == 401


def test_a_cloud_service_account_token_reaches_the_gateway_and_disabled_is_invalid_client(fake_jira):
    fake_jira.add_service_account("sa-cloud", "cloud-secret", cloud=True, user="712020:abc", display_name="Bot")

    answer = cloud_token(fake_jira, scope="read:jira-work offline_access")
    token = answer.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    resources = requests.get(fake_jira.api_url + "/oauth/token/accessible-resources", headers=headers, timeout=5)
    myself = requests.get(f"{fake_jira.api_url}/ex/jira/{CLOUD_ID}/rest/api/3/myself", headers=headers, timeout=5)
    too_wide = cloud_token(fake_jira, scope="manage:jira-configuration")
    wrong = cloud_token(fake_jira, secret="nope")
    fake_jira.disable_service_account("sa-cloud")
    disabled = cloud_token(fake_jira)

    assert answer.status_code == 200 and "refresh_token" not in answer.json()
    assert [site["id"] for site in resources.json()] == [CLOUD_ID]
    assert myself.json()["accountId"] == "712020:abc" and myself.json()["accountType"] == "app"
    assert (too_wide.status_code, too_wide.json()["error"]) == (403, "invalid_scope")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "access_denied")
    assert (disabled.status_code, disabled.json()["error"]) == (401, "invalid_client")
    assert fake_jira.client_credentials_requests["sa-cloud"] == 4


def test_concurrent_token_requests_can_be_held_to_prove_they_overlapped(fake_jira):
    fake_jira.add_service_account("sa-dc", "dc-secret")
    fake_jira.hold_token_requests(until_in_flight=3, timeout=5)

    threads = [threading.Thread(target=dc_token, args=(fake_jira,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fake_jira.max_token_in_flight == 3
    assert fake_jira.client_credentials_requests["sa-dc"] == 3
